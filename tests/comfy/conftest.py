"""In-process ComfyUI on CPU for the pack's integration tests.

Every test here needs a ComfyUI v0.20.x source tree (``COMFYUI_ROOT``) and a Python that can import it
(``scripts/comfy-test-env.sh`` builds one). Without them every test skips with a reason that says how to
run them; with ``LTX23_REQUIRE_COMFY=1`` (the script sets it) they fail instead, so a broken CI environment
cannot pass by skipping.

ComfyUI reads its command line and folder layout when first imported, so nothing imports ``comfy`` before the
session fixture ``comfy_env`` has set the arguments and the temporary base directory: import ComfyUI modules inside
tests and fixtures, never at test-module level. ``import nodes`` means ComfyUI's ``nodes.py``; reach the pack's
node classes through ``comfy_pack.nodes``.

Fixtures:
  comfy_env        session, autouse: ``ComfyEnv`` (root, base_dir, path()); ComfyUI importable, on CPU, all its
                   folders under base_dir
  comfy_extras     session: ``nodes.NODE_CLASS_MAPPINGS`` after loading the core files in ``COMFY_EXTRAS``
  comfy_pack       session: ``LoadedPack`` - this repo loaded by ComfyUI's custom-node loader, nodes by node_id
  run_node         session: ``comfy_harness.run_node`` with the core nodes loaded
  tiny_ltx23_ckpt  session: file name (in models/checkpoints) of a tiny random LTX-2.3 checkpoint
  tiny_ltx20_ckpt  session: the same for LTX-2.0
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from comfy_harness import HOW_TO_RUN, PACK_DIR_NAME, REPO_ROOT, ComfyEnv, LoadedPack, LogRecorder
from comfy_harness import run_node as _run_node

# Core node files (comfy_extras/) the tests use; ComfyUI loads them the same way at start-up.
COMFY_EXTRAS = (
    "nodes_lt.py",
    "nodes_lt_audio.py",
    "nodes_custom_sampler.py",
    "nodes_model_advanced.py",
    "nodes_train.py",
    "nodes_dataset.py",
    "nodes_video.py",
    "nodes_audio.py",
)

# Test modules import trainer_core (and tests/' shared helpers such as gradcheck) at collection, also under a bare
# ``pytest`` (no working directory on sys.path). Appended last, so ComfyUI's ``nodes`` shadows the pack's ``nodes``
# package once the comfy_env fixture adds COMFYUI_ROOT.
for _path in (REPO_ROOT, REPO_ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

BASE_SUBDIRS = ("models/checkpoints", "models/loras", "models/diffusion_models", "models/vae",
                "models/text_encoders", "output", "input", "temp", "user", "custom_nodes")


def _fail_or_skip(reason: str):
    if os.environ.get("LTX23_REQUIRE_COMFY") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def comfy_env(tmp_path_factory) -> ComfyEnv:
    root = os.environ.get("COMFYUI_ROOT")
    if not root:
        _fail_or_skip(f"COMFYUI_ROOT is not set. {HOW_TO_RUN}")
    root = Path(root).resolve()
    if not (root / "comfy" / "model_management.py").is_file():
        _fail_or_skip(f"COMFYUI_ROOT={root} is not a ComfyUI source tree. {HOW_TO_RUN}")

    # First on sys.path: ComfyUI's top-level ``nodes`` module must win over this repo's ``nodes`` package,
    # which the working directory would otherwise supply.
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))

    base_dir = tmp_path_factory.mktemp("comfy_base")
    for sub in BASE_SUBDIRS:
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    try:
        from comfy.cli_args import args

        # Read at import: model_management probes CUDA unless --cpu is set, folder_paths fixes its folders.
        args.cpu = True
        args.base_directory = str(base_dir)
        import comfy.model_management  # noqa: F401
        import folder_paths
        import nodes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "this Python cannot run ComfyUI"
        _fail_or_skip(f"ComfyUI at {root} does not import ({type(exc).__name__}: {exc}). {HOW_TO_RUN}")

    if Path(folder_paths.base_path).resolve() != base_dir.resolve():
        pytest.fail(f"folder_paths was imported before the comfy_env fixture set --base-directory (it uses "
                    f"{folder_paths.base_path}); import ComfyUI modules inside tests, not at module level")
    return ComfyEnv(root=root, base_dir=base_dir)


@pytest.fixture(scope="session")
def comfy_extras(comfy_env) -> dict:
    import nodes

    async def load():
        await nodes.init_public_apis()
        return [name for name in COMFY_EXTRAS
                if not await nodes.load_custom_node(str(comfy_env.root / "comfy_extras" / name),
                                                    module_parent="comfy_extras")]

    failed = asyncio.run(load())
    assert not failed, f"core ComfyUI nodes failed to import: {failed}"
    return nodes.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="session")
def comfy_pack(comfy_env, comfy_extras) -> LoadedPack:
    import nodes

    module_path = comfy_env.path("custom_nodes", PACK_DIR_NAME)
    module_path.symlink_to(REPO_ROOT, target_is_directory=True)
    # As init_external_custom_nodes does: a pack cannot override core node ids.
    core_ids = set(nodes.NODE_CLASS_MAPPINGS)
    with LogRecorder() as log:
        loaded = asyncio.run(nodes.load_custom_node(str(module_path), core_ids, module_parent="custom_nodes"))
    assert loaded, "ComfyUI would print IMPORT FAILED for the pack:\n" + "\n".join(r.getMessage() for r in log)
    owner = f"custom_nodes.{PACK_DIR_NAME}"
    pack_nodes = {node_id: cls for node_id, cls in nodes.NODE_CLASS_MAPPINGS.items()
                  if getattr(cls, "RELATIVE_PYTHON_MODULE", None) == owner}
    module = sys.modules[str(module_path).replace(".", "_x_")]
    return LoadedPack(module_path=module_path, module=module, nodes=pack_nodes, log=log)


@pytest.fixture(scope="session")
def run_node(comfy_extras):
    return _run_node


def _tiny_checkpoint(comfy_env, version: str) -> str:
    import tiny_checkpoint

    name = f"tiny-ltx-{version}.safetensors"
    tiny_checkpoint.write_tiny_checkpoint(str(comfy_env.path("models", "checkpoints", name)), version=version)
    return name


@pytest.fixture(scope="session")
def tiny_ltx23_ckpt(comfy_env) -> str:
    return _tiny_checkpoint(comfy_env, "2.3")


@pytest.fixture(scope="session")
def tiny_ltx20_ckpt(comfy_env) -> str:
    return _tiny_checkpoint(comfy_env, "2.0")
