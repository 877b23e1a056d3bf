"""Writing a validation sweep's result back into a saved LoRA's run card.

A sweep run on a file this pack saved records its recommended strength, source and scores in that file's
safetensors metadata, so the Inspector, the loaders' users and anyone the file is shared with see it. Only the
header changes: the tensor bytes are copied unchanged into a temporary file next to the original, which then
replaces it in one rename (``trainer_core.atomic``), so a crash leaves the old file or the new one.

Files other tools wrote are never modified (their owners did not ask for it); the sweep's scores JSON in the
output folder is then the record.
"""

from __future__ import annotations

import json
import os
import shutil
import struct

from ..atomic import atomic_path
from .lora_file import PACK_NAME

_MAX_HEADER = 100 * 2**20
"""The safetensors format's own limit on the JSON header."""


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the offset where its tensor data starts."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (size,) = struct.unpack("<Q", raw)
        if size > _MAX_HEADER:
            raise ValueError(f"{path} is not a safetensors file (header length {size})")
        header = json.loads(fh.read(size))
    return header, 8 + size


def sweep_card(recommended: float | None, source: str, scores: dict | None) -> dict[str, str]:
    """The run-card keys a sweep sets; ``recommended`` None (the LoRA changes nothing) is recorded as "none"."""
    card = {"recommended_strength": "none" if recommended is None else f"{recommended:g}",
            "recommended_strength_source": source}
    if scores:
        card["validation_sweep"] = json.dumps(scores, sort_keys=True)
    return card


def write_card(path: str | os.PathLike, updates: dict[str, str]) -> bool:
    """Merges ``updates`` into the metadata of a LoRA file this pack saved; returns False (and changes nothing)
    for any other file."""
    header, offset = read_header(path)
    metadata = dict(header.get("__metadata__") or {})
    if metadata.get("pack") != PACK_NAME:
        return False
    metadata.update({k: str(v) for k, v in updates.items()})
    header["__metadata__"] = metadata
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)  # tensor data stays 8-byte aligned, as safetensors writes it
    with atomic_path(path) as tmp, open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(struct.pack("<Q", len(body)))
        dst.write(body)
        src.seek(offset)
        shutil.copyfileobj(src, dst, 16 * 2**20)
    return True
