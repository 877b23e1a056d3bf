"""Atomic file writes: a crash or cancel leaves either the old file or the complete new one, never a torn file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .diskspace import DiskFullError, ensure_space, free_bytes, is_disk_full


TEMP_SUFFIX = ".tmp"


def is_temp_file(name: str) -> bool:
    """A temporary file ``atomic_path`` leaves behind when the process is killed mid-write."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size_hint: int | None = None):
    """Yields a temporary path in the target's folder; on success it replaces ``path`` in one rename.

    A full disk raises ``diskspace.DiskFullError`` (path, bytes needed and free, fix): before writing when
    ``size_hint`` bytes do not fit, else when the write fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if size_hint:
        ensure_space(path, size_hint)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise DiskFullError(path, max(size_hint or 0, written) or None, free_bytes(path.parent)) from exc
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
