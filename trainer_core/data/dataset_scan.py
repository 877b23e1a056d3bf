"""Finding a dataset's entries: a folder of media with sidecar captions, or an ltx-trainer style manifest.

Scanning only pairs paths with captions and references; probing and linting the media is ``dataset``'s job.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import media, pairs
from ..problems import ERROR, INFO, WARNING, Problem
from .captions import normalize_caption, read_caption_file

if TYPE_CHECKING:
    from .dataset import DatasetConfig

MANIFEST_EXTENSIONS = (".json", ".jsonl", ".csv")
MEDIA_COLUMNS = ("video", "media_path", "video_path")
CAPTION_COLUMNS = ("caption",)
REFERENCE_COLUMNS = ("reference_video", "ref_media_path")


class DatasetError(ValueError):
    """The dataset as a whole cannot be read (missing folder, unreadable manifest)."""


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def extension_kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in media.VIDEO_EXTENSIONS:
        return "video"
    if ext in media.IMAGE_EXTENSIONS:
        return "image"
    return None


@dataclasses.dataclass
class ScanEntry:
    item_id: str
    media_path: Path | None
    caption: str | None
    caption_source: str
    reference_path: Path | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)


def walk(root: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """Visible files (sorted) and, when not recursive, the subfolders that were skipped."""
    files: list[Path] = []
    skipped_dirs: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if not recursive:
            skipped_dirs = [Path(dirpath) / d for d in dirnames]
            dirnames[:] = []
        files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return files, skipped_dirs


def scan_folder(root: Path, config: DatasetConfig) -> tuple[list[ScanEntry], list[Problem]]:
    files, skipped_dirs = walk(root, config.recursive)
    entries: list[ScanEntry] = []
    notes: list[Problem] = []
    used_captions: set[Path] = set()
    ignored: list[str] = []
    manifests: list[str] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if extension_kind(path) is None:
            if path.suffix.lower() == ".txt":
                continue
            (manifests if path.suffix.lower() in MANIFEST_EXTENSIONS else ignored).append(rel)
            continue
        if pairs.is_sidecar_reference(path):
            continue
        sidecar = path.with_suffix(".txt")
        entry = ScanEntry(rel, path, None, sidecar.relative_to(root).as_posix(),
                          reference_path=pairs.sidecar_reference(path))
        if sidecar.is_file():
            used_captions.add(sidecar)
            entry.caption, problem = read_caption_file(sidecar)
            if problem:
                entry.problems.append(problem)
        if not config.allow_outside_root and not _inside(path, root):
            entry.problems.append(_outside_problem(rel, path, root))
        entries.append(entry)
    _warn_shared_captions(entries)
    orphans = [p.relative_to(root).as_posix() for p in files if p.suffix.lower() == ".txt" and p not in used_captions]
    if orphans:
        notes.append(Problem(WARNING, "caption_without_media", f"{len(orphans)} caption file(s) have no media file "
                             f"of the same name: {_listing(orphans)}", "rename the caption or the media so their "
                             "names match (clip.mp4 + clip.txt), or delete the caption"))
    if ignored:
        notes.append(Problem(WARNING, "unsupported_file", f"{len(ignored)} file(s) are not supported media and were "
                             f"not loaded: {_listing(ignored)}", "convert them to " + ", ".join(
                                 media.VIDEO_EXTENSIONS + media.IMAGE_EXTENSIONS) + ", or move them out of the folder"))
    if manifests:
        notes.append(Problem(INFO, "manifest_not_used", f"the folder holds manifest file(s) {_listing(manifests)}, "
                             "but a folder is read through its .txt captions", "to use a manifest, give its file path "
                             "instead of the folder"))
    if skipped_dirs:
        count = sum(1 for d in skipped_dirs for f in d.rglob("*") if f.is_file() and extension_kind(f))
        if count:
            notes.append(Problem(WARNING, "subfolders_not_scanned", f"{count} media file(s) in subfolders "
                                 f"{_listing([d.name for d in skipped_dirs])} were not loaded", "enable 'recursive' "
                                 "to include subfolders"))
    return entries, notes


def _warn_shared_captions(entries: list[ScanEntry]) -> None:
    """``a.mp4`` and ``a.png`` both read ``a.txt``: almost always two different pictures under one description."""
    by_caption: dict[str, list[ScanEntry]] = {}
    for entry in entries:
        if entry.caption is not None:
            by_caption.setdefault(entry.caption_source, []).append(entry)
    for source, sharing in by_caption.items():
        if len(sharing) < 2:
            continue
        for entry in sharing:
            others = [e.item_id for e in sharing if e is not entry]
            entry.problems.append(Problem(WARNING, "caption_shared", f"its caption {source} is also used by "
                                          f"{_listing(others)}", "give each file a caption of its own: rename one "
                                          f"of them (e.g. {Path(entry.item_id).stem}_2{Path(entry.item_id).suffix} "
                                          f"with {Path(entry.item_id).stem}_2.txt)"))


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _outside_problem(label: str, path: Path, root: Path) -> Problem:
    return Problem(ERROR, "outside_root", f"{label} resolves to {path.resolve()}, outside the dataset root {root}",
                   "move the file into the dataset folder, or enable 'allow outside root' if this is intended")


def read_manifest_rows(manifest: Path) -> list[tuple[int, dict | None, str | None]]:
    """``(line or row number, row, parse error)`` for every record of a manifest."""
    ext = manifest.suffix.lower()
    try:
        text = manifest.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{manifest.name} is not UTF-8 (offset {exc.start}); re-save it as UTF-8.") from exc
    if ext == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{manifest.name} is not valid JSON (line {exc.lineno}: {exc.msg}); fix the syntax "
                               "or export it again.") from exc
        if not isinstance(data, list):
            raise DatasetError(f"{manifest.name} must hold a JSON list of objects like "
                               '[{"video": "clips/a.mp4", "caption": "..."}]; it holds a ' + type(data).__name__ + ".")
        return [(n, row, None) if isinstance(row, dict) else (n, None, "entry is not an object")
                for n, row in enumerate(data, start=1)]
    if ext == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((n, None, f"invalid JSON ({exc.msg})"))
                continue
            rows.append((n, row, None) if isinstance(row, dict) else (n, None, "line is not a JSON object"))
        return rows
    if ext == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        # Row numbers count the header as line 1, as a spreadsheet shows them.
        return [(n, {k: v for k, v in row.items() if k is not None}, None) for n, row in enumerate(reader, start=2)]
    raise DatasetError(f"{manifest.name}: manifests must be .json (a list), .jsonl or .csv.")


def _column(rows: list[dict], names: tuple[str, ...]) -> str | None:
    keys = {k for row in rows for k in row}
    return next((name for name in names if name in keys), None)


def scan_manifest(manifest: Path, root: Path, config: DatasetConfig) -> tuple[list[ScanEntry], list[Problem]]:
    records = read_manifest_rows(manifest)
    rows = [row for _, row, _ in records if row is not None]
    media_column = _column(rows, MEDIA_COLUMNS)
    if rows and media_column is None:
        found = sorted({k for row in rows for k in row})
        raise DatasetError(f"{manifest.name} has no media column (found: {', '.join(found) or 'none'}); name the "
                           f"column with the clip paths one of: {', '.join(MEDIA_COLUMNS)}.")
    caption_column = _column(rows, CAPTION_COLUMNS)
    reference_column = _column(rows, REFERENCE_COLUMNS)
    notes = []
    if rows and caption_column is None:
        notes.append(Problem(WARNING, "no_caption_column", f"{manifest.name} has no 'caption' column",
                             "add a 'caption' column with one caption per clip"))
    entries = []
    seen: set[str] = set()
    for number, row, error in records:
        label = f"{manifest.name}#{number}"
        if row is None:
            entries.append(ScanEntry(label, None, None, label, problems=[Problem(
                ERROR, "manifest_entry_invalid", f"entry {number}: {error}", "fix or remove this entry")]))
            continue
        value = row.get(media_column)
        if not isinstance(value, str) or not value.strip():
            entries.append(ScanEntry(label, None, None, label, problems=[Problem(
                ERROR, "manifest_entry_no_media", f"entry {number} has no '{media_column}' path",
                "fill in the clip path or remove the entry")]))
            continue
        path = (manifest.parent / value.strip()).absolute()
        item_id = path.relative_to(root).as_posix() if _inside(path, root) and path.is_relative_to(root) \
            else value.strip()
        if item_id in seen:
            item_id = f"{item_id}@{label}"
        seen.add(item_id)
        caption = row.get(caption_column) if caption_column else None
        entry = ScanEntry(item_id, path, None if caption is None else normalize_caption(str(caption)),
                       f"{label} '{caption_column or 'caption'}'")
        if not config.allow_outside_root and not _inside(path, root):
            entry.problems.append(_outside_problem(value.strip(), path, root))
        reference = row.get(reference_column) if reference_column else None
        if isinstance(reference, str) and reference.strip():
            entry.reference_path = (manifest.parent / reference.strip()).absolute()
            if not config.allow_outside_root and not _inside(entry.reference_path, root):
                entry.problems.append(_outside_problem(f"reference {reference.strip()}", entry.reference_path, root))
        else:
            entry.reference_path = pairs.sidecar_reference(path)
        entries.append(entry)
    if not records:
        notes.append(Problem(ERROR, "manifest_empty", f"{manifest.name} lists no entries", "add entries to it"))
    return entries, notes


def resolve_source(source: str) -> tuple[Path, Path | None]:
    """``(root, manifest or None)``."""
    if not source or not source.strip():
        raise DatasetError("No dataset path given. Set it to a folder of clips with .txt captions, or to a "
                           "dataset.json / .jsonl / .csv manifest.")
    path = Path(source.strip()).expanduser()
    if path.is_dir():
        return path.absolute(), None
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_EXTENSIONS:
            raise DatasetError(f"{path.name} is neither a folder nor a manifest; give the folder that holds it, or "
                               "a .json / .jsonl / .csv manifest.")
        return path.parent.absolute(), path.absolute()
    raise DatasetError(f"Dataset path {path} does not exist; check the spelling, or use an absolute path.")
