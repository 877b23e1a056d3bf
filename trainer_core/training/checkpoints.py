"""Resumable training checkpoints: everything needed to continue a run bit-identically.

A checkpoint is two files per step, both written atomically: ``step_XXXXXX.ckpt`` (LoRA training state,
optimizer, RNG, data position, loss history, settings) and ``step_XXXXXX.safetensors`` (the LoRA at that step,
loadable in ComfyUI as it is, so users can try a mid-run checkpoint).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import torch

from ..atomic import atomic_path
from ..diskspace import ensure_space, tensor_bytes

FORMAT = 1
_STEP_FILE = re.compile(r"step_(\d{6})\.ckpt$")


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"step_{step:06d}.ckpt"


def save_checkpoint(folder: str | os.PathLike, step: int, state: dict,
                    write_lora: Callable[[Path], object] | None = None) -> Path:
    """Writes ``step_XXXXXX.ckpt`` and, with ``write_lora``, its LoRA file: both land, or neither does (a full
    disk or a crash while writing either leaves the previous checkpoints as they were)."""
    path = checkpoint_path(folder, step)
    lora = path.with_suffix(".safetensors")
    state = {"format": FORMAT, "step": step, **state}
    # Checked for the pair up front: running out between the two files would waste the first.
    ensure_space(path, tensor_bytes(state) + (tensor_bytes(state.get("lora")) if write_lora else 0) + (1 << 20))
    try:
        with atomic_path(path) as tmp_ckpt:
            torch.save(state, tmp_ckpt)
            if write_lora is not None:
                # Renamed into place just before the checkpoint is: resume looks for the .ckpt, users for the LoRA.
                with atomic_path(lora) as tmp_lora:
                    write_lora(tmp_lora)
    except BaseException:
        if write_lora is not None and not path.exists() and lora.exists():
            lora.unlink()
        raise
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
    """One checkpoint file; a folder means its newest readable checkpoint (see ``load_resumable``)."""
    if Path(path).is_dir():
        return load_resumable(path)[0]
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable training checkpoint ({type(exc).__name__}: {exc}); resume "
                         "from an earlier one (the LoRA Trainer's 'resume_from')") from exc
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} was written by an incompatible version of the trainer (format {state.get('format')})")
    state["path"] = str(path)
    return state


def load_resumable(folder: str | os.PathLike, pick: str = "") -> tuple[dict, list[str]]:
    """The checkpoint to resume from, and notes on what was skipped.

    ``pick`` empty: the newest checkpoint that reads, falling back past unreadable ones (a crash or full disk
    while one was copied). ``pick`` a step number (``750``) or a file name (``step_000750.ckpt``): that one."""
    folder = Path(folder)
    found = list_checkpoints(folder)
    if not found:
        raise FileNotFoundError(f"no step_*.ckpt checkpoint in {folder}; point resume at a run's checkpoints folder")
    pick = pick.strip()
    if pick:
        name = checkpoint_path(folder, int(pick)).name if pick.isdigit() else Path(pick).name
        chosen = [p for p in found if p.name == name]
        if not chosen:
            raise ValueError(f"resume_from {pick!r}: no {name} in {folder}; it holds "
                             + ", ".join(p.name for p in found) + ". Leave resume_from empty for the newest")
        return load_checkpoint(chosen[0]), []
    notes = []
    for path in reversed(found):
        try:
            state = load_checkpoint(path)
        except ValueError as exc:
            notes.append(f"skipped {path.name}: {exc.args[0].split(' (')[0]} is unreadable")
            continue
        if notes:
            notes.append(f"resumed from {path.name}, the newest readable checkpoint")
        return state, notes
    raise ValueError(f"none of the checkpoints in {folder} is readable ({', '.join(p.name for p in found)}); "
                     "start a new run (turn 'resume' off)")


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
