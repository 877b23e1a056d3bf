"""Content hashes of the latent cache's files, recorded in its manifest and checked before training starts.

A file truncated or damaged in place (a disk error, an interrupted copy, a bad sync) can still carry a valid
header; without a check it fails mid-run, or worse, trains on garbage until the loss turns NaN. Latent Precompute
records each file's size and sha256 (``manifest["files"]``) and re-encodes a file that no longer matches. Before step
1 the trainer checks every file the run reads: a damaged sample is named and left out, a damaged empty-caption
file stops the run with the fix. Hashing runs at disk speed (about 1 s per GB), far below one training step.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable

_CHUNK = 1 << 22


def digest(path: str) -> dict:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": h.hexdigest()}


def problem(root: str, rel: str, record: dict | None) -> str | None:
    """Why ``rel`` does not match its record (missing, truncated, changed), or None; no record means unchecked."""
    if record is None:
        return None
    path = os.path.join(root, rel)
    try:
        size = os.path.getsize(path)
    except OSError:
        return "the file is missing"
    if size != record["bytes"]:
        return f"the file is {size} bytes, {record['bytes']} were written (truncated or overwritten)"
    if digest(path)["sha256"] != record["sha256"]:
        return "its content changed since it was written (the sha256 differs: damaged on disk)"
    return None


def digests(root: str, rels: Iterable[str], recorded: dict, verified: set[str]) -> dict[str, dict]:
    """Records for ``rels``: those just verified against ``recorded`` keep their record, the rest are hashed."""
    return {rel: recorded[rel] if rel in verified else digest(os.path.join(root, rel)) for rel in rels}


def verify_cache(cache) -> list[str]:
    """Checks every file ``cache`` (a ``LatentCache``) reads against the manifest's hashes, before training.

    Samples with a damaged file are left out of ``cache`` (their ids go to ``cache.excluded``); returns one line per
    damaged file with its fix. Raises when the empty caption's context (needed by caption dropout) is damaged."""
    records = cache.manifest.get("files")
    if not records:
        return ["this cache was written without content hashes (an older version); re-run Latent Precompute on it "
                "to add them, so damaged files are found before training"]
    fix = f"re-run Latent Precompute on {cache.root} (it re-encodes only the damaged files)"
    empty = cache.manifest["empty_text"]
    reason = problem(cache.root, empty, records.get(empty))
    if reason:
        raise ValueError(f"latent cache file {os.path.join(cache.root, empty)} (the empty caption's context): "
                         f"{reason}. Fix: {fix}")
    checked: dict[str, str | None] = {}
    lines, keep = [], []
    for entry in cache.entries:
        bad = []
        for rel in (entry["media"], entry["text"], entry.get("audio")):
            if rel and rel not in checked:
                checked[rel] = problem(cache.root, rel, records.get(rel))
            if rel and checked[rel]:
                bad.append(f"{os.path.join(cache.root, rel)}: {checked[rel]}")
        if bad:
            cache.excluded[entry["sample_id"]] = "; ".join(bad)
            lines.append(f"sample {entry['sample_id']} left out: {'; '.join(bad)}. Fix: {fix}")
        else:
            keep.append(entry)
    if not keep:
        raise ValueError("every sample of the latent cache is damaged on disk:\n" + "\n".join(lines))
    cache.entries = keep
    return lines
