"""Helpers for the ComfyUI integration tests that are not fixtures (fixtures live in ``conftest.py``).

Importable from any test in this folder (``from comfy_harness import Listed``); importing it loads no ComfyUI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_DIR_NAME = "ltx23_trainer"
"""The folder name users clone the pack into, under ``custom_nodes/``."""

HOW_TO_RUN = (
    "ComfyUI integration tests need a ComfyUI v0.20.x checkout and a Python that imports it: "
    "run `COMFYUI_ROOT=/path/to/ComfyUI scripts/comfy-test-env.sh` (builds a cached CPU env once, then runs "
    "pytest tests/comfy), or export COMFYUI_ROOT and LD_LIBRARY_PATH yourself (`source <workdir>/env.sh`)"
)


@dataclasses.dataclass(frozen=True)
class ComfyEnv:
    root: Path
    """COMFYUI_ROOT."""
    base_dir: Path
    """The ``--base-directory`` of this session: models/, output/, input/, temp/, user/, custom_nodes/."""

    def path(self, *parts: str) -> Path:
        return self.base_dir.joinpath(*parts)


@dataclasses.dataclass(frozen=True)
class LoadedPack:
    module_path: Path
    """``<base>/custom_nodes/ltx23_trainer``, a symlink to this repo."""
    module: object
    """The package as ComfyUI imported it. Its ``__name__`` is the folder's full path, so its classes are not
    those of ``import trainer_core`` in a test: compare node behaviour, not ``isinstance`` across the two."""
    nodes: dict
    """node_id -> node class, exactly what ComfyUI registered for this pack."""
    log: list
    """Log records (WARNING and up) emitted while ComfyUI loaded the pack."""


@dataclasses.dataclass
class NodeRun:
    outputs: tuple
    """One entry per output socket: the value a downstream node receives (a list for list outputs or list runs)."""
    ui: dict

    def __getitem__(self, index):
        return self.outputs[index]

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self):
        return len(self.outputs)


class Listed(list):
    """Marks an input value as an already-listed upstream output (as from an ``is_output_list`` node)."""


class LogRecorder(logging.Handler):
    """Collects WARNING+ records on the root logger; for session fixtures, which caplog cannot see."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        logging.getLogger().addHandler(self)
        return self.records

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self)


def run_node(node, unique_id: str = "1", **inputs) -> NodeRun:
    """One node execution the way ComfyUI's executor does it (needs the ``comfy_env`` fixture active).

    Widgets not given take their defaults, as the front end fills them in.

    ``node`` is a registered node_id (core or pack) or a node class. Inputs are given by name, one upstream value
    each (wrap in ``Listed`` to pass a list output). The node runs under ``torch.inference_mode()`` with
    ComfyUI's own code filling V3 hidden inputs (``unique_id`` ...), list inputs and async ``execute``.
    """
    import execution
    import nodes
    import torch

    node_cls = nodes.NODE_CLASS_MAPPINGS[node] if isinstance(node, str) else node
    inputs = {**_widget_defaults(node_cls), **inputs}

    async def run():
        plain = {k: v for k, v in inputs.items() if not isinstance(v, Listed)}
        input_data_all, _, v3_data = execution.get_input_data(plain, node_cls, unique_id)
        input_data_all.update({k: list(v) for k, v in inputs.items() if isinstance(v, Listed)})
        obj = node_cls()
        results = await execution._async_map_node_over_list(
            "pytest", unique_id, obj, input_data_all, obj.FUNCTION, v3_data=v3_data)
        results = await execution.resolve_map_node_over_list_results(results)
        return execution.get_output_from_returns(results, obj)

    with torch.inference_mode():
        outputs, ui, _ = asyncio.run(run())
    is_list = getattr(node_cls, "OUTPUT_IS_LIST", None) or [False] * len(outputs)
    return NodeRun(outputs=tuple(o if listed or len(o) != 1 else o[0] for o, listed in zip(outputs, is_list)), ui=ui)


def _widget_defaults(node_cls) -> dict:
    """What the front end puts in a prompt for widgets the user left alone: each input's default."""
    defaults = {}
    spec = node_cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            if len(entry) > 1 and isinstance(entry[1], dict) and "default" in entry[1]:
                defaults[name] = entry[1]["default"]
    return defaults


class FakeClip:
    """Stands in for ComfyUI's LTX text encoder (Gemma 3 12B cannot be built tiny): ``tokenize`` +
    ``encode_from_tokens_scheduled`` with ComfyUI's output format, raw (unprocessed) features, one token per word.
    ``width`` is the raw width the model's connectors take: ``tiny_checkpoint.raw_text_width(version)``."""

    def __init__(self, width: int):
        self.width = width
        self.encoded = []

    def tokenize(self, text):
        return text.split()

    def encode_from_tokens_scheduled(self, tokens):
        self.encoded.append(" ".join(tokens))
        return [[self.raw(" ".join(tokens)), {"pooled_output": None, "unprocessed_ltxav_embeds": True}]]

    def raw(self, text):
        import torch

        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        return torch.randn(1, len(text.split()) + 1, self.width, generator=torch.Generator().manual_seed(seed))
