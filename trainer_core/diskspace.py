"""Running out of disk space, said plainly: which file, how many bytes it needs, how many are free, what to do.

Writers report a full disk in their own words (``OSError: [Errno 28] No space left on device``, torch.save's
``inline_container.cc ... file write failed``, safetensors' ``IoError(Os { code: 28 ...})``); ``DiskFullError``
replaces them all. ``atomic.atomic_path`` raises it before writing when a size estimate does not fit, and
translates any of those errors raised while writing.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch

_FULL_MARKERS = ("no space left", "storagefull", "code: 28", "disk quota", "file write failed", "inline_container")


class DiskFullError(OSError):
    def __init__(self, path: str | os.PathLike, needed: int | None, free: int):
        self.path, self.needed, self.free = str(path), needed, free
        need = f"about {_size(needed)} needed" if needed else "more space needed"
        super().__init__(errno.ENOSPC, f"not enough disk space to write {path}: {need}, {_size(free)} free on that "
                         f"disk. Fix: free space on it (old runs, checkpoints, latent caches), or choose a folder on "
                         f"another disk, then run again; files already finished are kept and reused")

    def __str__(self) -> str:
        return self.strerror


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB ({n} bytes)" if n >= 1e8 else f"{n / 1e6:.2f} MB ({n} bytes)"


def free_bytes(path: str | os.PathLike) -> int:
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _FULL_MARKERS)


def ensure_space(path: str | os.PathLike, needed: int) -> None:
    """Raises ``DiskFullError`` now, rather than after a partial write, when ``needed`` bytes do not fit."""
    free = free_bytes(Path(path).parent)
    if needed > free:
        raise DiskFullError(path, needed, free)


def tensor_bytes(obj) -> int:
    """Bytes of every tensor in a nested state (dicts, lists, tuples): what torch.save or safetensors will write,
    give or take the headers."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0
