"""Folders typed into a node: relative ones live under a ComfyUI folder and may not climb out of it."""

from __future__ import annotations

import os


def resolve_under(folder: str, base: str, what: str) -> str:
    """``folder`` as an absolute path: absolute (or ``~``) paths as given, relative ones joined to ``base``.

    A relative path that leaves ``base`` (``../../etc``) is refused: a shared workflow must not be able to read
    or write arbitrary folders through a field that looks local. Symlinks inside ``base`` are followed as usual,
    so a dataset linked into the folder works."""
    folder = os.path.expanduser(folder.strip())
    if os.path.isabs(folder):
        return os.path.normpath(folder)
    base = os.path.normpath(os.path.abspath(base))
    joined = os.path.normpath(os.path.join(base, folder))
    if os.path.commonpath([joined, base]) != base:
        raise ValueError(f"{what} {folder!r} leads outside ComfyUI's {os.path.basename(base)} folder ({base}); "
                         f"give a folder inside it, or an absolute path if you mean a folder elsewhere")
    return joined
