"""The pack installs as a ComfyUI custom node: in-process loader, real start-up, and a broken install."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import subprocess
import sys

from comfy_harness import PACK_DIR_NAME, REPO_ROOT

NODE_ID_PREFIX = "LTX23Trainer_"
# Stands in for any dependency a user forgot to install.
MISSING_MODULE = "ltx23_simulated_missing_dependency"
BROKEN_NODES_INIT = f"import {MISSING_MODULE}  # noqa: F401\n"


def _entrypoint_node_ids(module) -> set[str]:
    async def ids():
        extension = await module.comfy_entrypoint()
        return {cls.GET_SCHEMA().node_id for cls in await extension.get_node_list()}

    return asyncio.run(ids())


def test_pack_registers_its_nodes(comfy_pack):
    import nodes

    messages = [r.getMessage() for r in comfy_pack.log]
    assert not messages, f"loading the pack logged warnings/errors: {messages}"
    # A V1 NODE_CLASS_MAPPINGS would make ComfyUI ignore comfy_entrypoint entirely.
    assert getattr(comfy_pack.module, "NODE_CLASS_MAPPINGS", None) is None
    assert set(comfy_pack.nodes) == _entrypoint_node_ids(comfy_pack.module)
    for node_id, cls in comfy_pack.nodes.items():
        assert node_id.startswith(NODE_ID_PREFIX), node_id
        # What /object_info serves for the node; schema mistakes surface here, not at import.
        info = cls.GET_NODE_INFO_V1()
        assert info["name"] == node_id
    assert nodes.EXTENSION_WEB_DIRS.get(PACK_DIR_NAME) == os.path.join(str(comfy_pack.module_path), "web")


def test_every_input_and_output_has_a_tooltip(comfy_pack):
    missing = []
    for node_id, cls in comfy_pack.nodes.items():
        schema = cls.GET_SCHEMA()
        missing += [f"{node_id}.{i.id}" for i in schema.inputs if not i.tooltip]
        missing += [f"{node_id} output {o.display_name or o.io_type}" for o in schema.outputs
                    if o.io_type != "MODEL" and not o.tooltip]
    assert not missing, missing


def test_error_titles_name_pack_exceptions_plainly(comfy_pack):
    """ComfyUI titles errors with module + qualname; the pack is imported under its folder path."""
    import execution

    strict_error = importlib.import_module(f"{comfy_pack.module.__name__}.trainer_core.data.dataset").StrictModeError
    assert execution.full_type_name(strict_error) == "ltx23_trainer.StrictModeError"
    assert execution.full_type_name(ValueError) == "ValueError"


def _base_dir_with(tmp_path, pack_source):
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)
    target = base / "custom_nodes" / PACK_DIR_NAME
    if pack_source == REPO_ROOT:
        target.symlink_to(REPO_ROOT, target_is_directory=True)
    else:
        shutil.copytree(pack_source, target, symlinks=True)
    return base


def _broken_pack_copy(tmp_path):
    copy = tmp_path / "broken_pack"
    # Dot-folders hold virtual envs and caches; tests and bench are not part of an install.
    shutil.copytree(REPO_ROOT, copy, ignore=shutil.ignore_patterns(".*", "__pycache__", "tests", "bench", "outputs"))
    (copy / "nodes" / "__init__.py").write_text(BROKEN_NODES_INIT)
    return copy


def _quick_test(comfy_env, base) -> tuple[int, str]:
    cmd = [sys.executable, "main.py", "--cpu", "--quick-test-for-ci", "--base-directory", str(base),
           # The default database lives inside the ComfyUI checkout; keep test runs out of it.
           "--database-url", "sqlite:///:memory:"]
    proc = subprocess.run(cmd, cwd=comfy_env.root, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _pack_import_line(log: str) -> str:
    lines = [line for line in log.splitlines() if line.rstrip().endswith(os.sep + PACK_DIR_NAME)]
    assert len(lines) == 1, f"expected one import-time line for the pack in the start-up log:\n{log}"
    return lines[0]


def test_comfyui_starts_with_the_pack(comfy_env, tmp_path):
    rc, log = _quick_test(comfy_env, _base_dir_with(tmp_path, REPO_ROOT))
    assert rc == 0, log
    assert "IMPORT FAILED" not in log, log
    assert "seconds:" in _pack_import_line(log)
    assert "[LTX-2.3 Trainer]" not in log, log


def test_broken_install_still_starts_and_says_why(comfy_env, tmp_path):
    rc, log = _quick_test(comfy_env, _base_dir_with(tmp_path, _broken_pack_copy(tmp_path)))
    assert rc == 0, log
    # The pack swallows its own import error, so ComfyUI counts it as loaded (with no nodes).
    assert "IMPORT FAILED" not in log, log
    _pack_import_line(log)
    assert (f"[LTX-2.3 Trainer] could not load its nodes (ModuleNotFoundError: No module named "
            f"'{MISSING_MODULE}')") in log, log
    assert "requirements.txt" in log


def test_broken_install_hint_names_the_pack_folder(comfy_env, tmp_path, caplog):
    import nodes

    base = _base_dir_with(tmp_path, _broken_pack_copy(tmp_path))
    with caplog.at_level(logging.ERROR):
        assert asyncio.run(nodes.load_custom_node(str(base / "custom_nodes" / PACK_DIR_NAME)))
    assert f"-r {base / 'custom_nodes' / PACK_DIR_NAME / 'requirements.txt'}`" in caplog.text
