"""Resumable training checkpoints: everything needed to continue a run bit-identically.

A checkpoint is two files per step, both written atomically: ``step_XXXXXX.ckpt`` (LoRA training state,
optimizer, RNG, data position, loss history, settings) and ``step_XXXXXX.safetensors`` (the LoRA at that step,
loadable in ComfyUI as it is, so users can try a mid-run checkpoint).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..atomic import atomic_path

FORMAT = 1
_STEP_FILE = re.compile(r"step_(\d{6})\.ckpt$")


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"step_{step:06d}.ckpt"


def save_checkpoint(folder: str | os.PathLike, step: int, state: dict) -> Path:
    path = checkpoint_path(folder, step)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "step": step, **state}, tmp)
    return path


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _STEP_FILE.search(p.name)), key=lambda p: p.name)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no step_*.ckpt checkpoint in {path}; point resume at a run's checkpoints folder")
        path = found
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable training checkpoint ({exc}); resume from an earlier one") from exc
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} was written by an incompatible version of the trainer (format {state.get('format')})")
    state["path"] = str(path)
    return state


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (with their LoRA files); ``keep == 0`` keeps everything."""
    if keep <= 0:
        return []
    removed = []
    for ckpt in list_checkpoints(folder)[:-keep]:
        for p in (ckpt, ckpt.with_suffix(".safetensors")):
            if p.exists():
                p.unlink()
                removed.append(p)
    return removed
