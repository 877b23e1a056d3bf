"""The Dataset Loader's logic: find media and captions, probe every file, and lint all of it.

Sources are a folder (media with ``.txt`` sidecar captions of the same stem) or an ltx-trainer style manifest
(``.json`` list, ``.jsonl`` or ``.csv``; paths relative to the manifest). Every file and entry the loader sees ends
up in the handle: usable items, excluded items with their reason, and dataset-level notes for files that are not
items (unsupported types, captions without media, folders not scanned). The handle holds paths and metadata only.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import media
from ..atomic import write_text_atomic
from ..problems import ERROR, INFO, WARNING, Problem, is_blocking, sorted_problems

MANIFEST_EXTENSIONS = (".json", ".jsonl", ".csv")
MEDIA_COLUMNS = ("video", "media_path", "video_path")
CAPTION_COLUMNS = ("caption",)
REFERENCE_COLUMNS = ("reference_video", "ref_media_path")
TRIGGER_POSITIONS = ("start", "end")
_PROBE_WORKERS = min(8, os.cpu_count() or 1)


class DatasetError(ValueError):
    """The dataset as a whole cannot be read (missing folder, unreadable manifest)."""


class StrictModeError(ValueError):
    """Strict mode found problems; ``handle`` still carries the full report."""

    def __init__(self, message: str, handle: DatasetHandle):
        super().__init__(message)
        self.handle = handle


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    source: str
    """A folder of media and captions, or a manifest file (.json, .jsonl, .csv)."""
    recursive: bool = False
    trigger_word: str = ""
    trigger_position: str = "start"
    allow_outside_root: bool = False
    """Accept manifest entries and symlinks that resolve outside the dataset root."""
    strict: bool = False
    """Fail on any error or warning instead of excluding items."""


@dataclasses.dataclass
class DatasetItem:
    item_id: str
    """Path relative to the dataset root (POSIX separators), or ``manifest#line`` for entries without a path."""
    media_path: str | None
    caption: str
    """Normalised caption with the trigger word inserted."""
    caption_source: str
    media_identity: str | None = None
    info: media.MediaInfo | None = None
    reference_path: str | None = None
    reference_identity: str | None = None
    reference_info: media.MediaInfo | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.info.kind if self.info else "unknown"

    @property
    def usable(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["kind"] = self.kind
        data["usable"] = self.usable
        return data

    @classmethod
    def from_json(cls, data: dict) -> DatasetItem:
        data = {k: v for k, v in data.items() if k not in ("kind", "usable")}
        for key in ("info", "reference_info"):
            if data.get(key) is not None:
                data[key] = media.MediaInfo.from_json(data[key])
        data["problems"] = [Problem.from_json(p) for p in data.get("problems", [])]
        return cls(**data)


@dataclasses.dataclass
class DatasetHandle:
    """What ``LTX23_DATASET`` carries between nodes: small, JSON-serialisable, no decoded frames."""

    root: str
    source: str
    config: DatasetConfig
    items: list[DatasetItem]
    notes: list[Problem]
    """Findings about the dataset rather than one item (ignored files, captions without media)."""
    fingerprint: str = ""

    def usable_items(self) -> list[DatasetItem]:
        return [item for item in self.items if item.usable]

    def excluded_items(self) -> list[DatasetItem]:
        return [item for item in self.items if not item.usable]

    def blocking_problems(self) -> list[tuple[str, Problem]]:
        found = [(item.item_id, p) for item in self.items for p in item.problems if is_blocking(p)]
        return found + [("dataset", p) for p in self.notes if is_blocking(p)]

    def to_json(self) -> dict:
        return {
            "root": self.root,
            "source": self.source,
            "config": dataclasses.asdict(self.config),
            "fingerprint": self.fingerprint,
            "summary": self.summary(),
            "items": [item.to_json() for item in self.items],
            "notes": [p.to_json() for p in self.notes],
        }

    @classmethod
    def from_json(cls, data: dict) -> DatasetHandle:
        return cls(
            root=data["root"], source=data["source"], config=DatasetConfig(**data["config"]),
            items=[DatasetItem.from_json(i) for i in data["items"]],
            notes=[Problem.from_json(p) for p in data["notes"]], fingerprint=data["fingerprint"],
        )

    def summary(self) -> dict:
        usable = self.usable_items()
        return {
            "items": len(self.items),
            "usable": len(usable),
            "videos": sum(1 for i in usable if i.kind == "video"),
            "images": sum(1 for i in usable if i.kind == "image"),
            "excluded": len(self.items) - len(usable),
            "warnings": sum(1 for i in self.items for p in i.problems if p.severity == WARNING)
            + sum(1 for p in self.notes if p.severity == WARNING),
        }

    def report_text(self) -> str:
        s = self.summary()
        lines = [
            f"LTX-2.3 dataset: {self.source} ({'manifest' if Path(self.source).is_file() else 'folder'}, "
            f"recursive: {'yes' if self.config.recursive else 'no'}, trigger: {self.config.trigger_word or 'none'})",
            f"{s['items']} items: {s['usable']} usable ({s['videos']} videos, {s['images']} images), "
            f"{s['excluded']} excluded, {s['warnings']} warnings. Fingerprint {self.fingerprint[:12]}.",
            "",
        ]
        for item in self.items:
            status = "EXCLUDED" if not item.usable else ("WARN" if any(is_blocking(p) for p in item.problems) else "OK")
            lines.append(f"{status:<8} {item.item_id}  {describe_media(item.info)}")
            for problem in sorted_problems(item.problems):
                lines.append(f"         - {problem.line()}")
        if self.notes:
            lines += ["", "Dataset notes:"]
            lines += [f"  - {p.line()}" for p in sorted_problems(self.notes)]
        return "\n".join(lines)


def describe_media(info: media.MediaInfo | None) -> str:
    if info is None:
        return "(unreadable)"
    if info.kind == "image":
        return f"image {info.width}x{info.height}"
    fps = f"{info.fps:.3f}".rstrip("0").rstrip(".") if info.fps else "?"
    vfr = " VFR" if info.variable_frame_rate else ""
    audio = "audio" if info.has_audio else "no audio"
    return f"video {info.width}x{info.height} {info.frames} frames {fps} fps{vfr} {info.duration:.2f}s {audio}"


def normalize_caption(text: str) -> str:
    return " ".join(text.split())


def apply_trigger(caption: str, trigger: str, position: str = "start") -> str:
    """Inserts the trigger word once; a caption that already contains it (as a whole word) is left alone."""
    trigger = normalize_caption(trigger)
    if not trigger:
        return caption
    if position not in TRIGGER_POSITIONS:
        raise ValueError(f"Trigger position '{position}' is not one of {', '.join(TRIGGER_POSITIONS)}.")
    if re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, flags=re.IGNORECASE):
        return caption
    if not caption:
        return trigger
    return f"{trigger} {caption}" if position == "start" else f"{caption} {trigger}"


def read_caption_file(path: Path) -> tuple[str | None, Problem | None]:
    """Caption text (UTF-8, BOM tolerated, whitespace normalised) or the problem that prevents reading it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, Problem(ERROR, "caption_unreadable", f"caption {path.name} cannot be read ({exc.strerror})",
                             "check the file's permissions")
    try:
        return normalize_caption(raw.decode("utf-8-sig")), None
    except UnicodeDecodeError as exc:
        return None, Problem(
            ERROR, "caption_not_utf8",
            f"caption {path.name} is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "re-save the caption file as UTF-8",
        )


def _caption_problems(caption: str | None, source: str, trigger: str) -> list[Problem]:
    if caption:
        return []
    what = "no caption file" if caption is None else "the caption is empty"
    where = f" ({source})"
    if trigger.strip():
        return [Problem(WARNING, "caption_missing" if caption is None else "caption_empty",
                        f"{what}{where}; it trains on the trigger word alone",
                        "write a caption describing the clip, or accept trigger-only training")]
    return [Problem(ERROR, "caption_missing" if caption is None else "caption_empty", f"{what}{where}",
                    "write a caption describing the clip, or set a trigger word to train it on the trigger alone")]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _extension_kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in media.VIDEO_EXTENSIONS:
        return "video"
    if ext in media.IMAGE_EXTENSIONS:
        return "image"
    return None


@dataclasses.dataclass
class _Entry:
    item_id: str
    media_path: Path | None
    caption: str | None
    caption_source: str
    reference_path: Path | None = None
    problems: list[Problem] = dataclasses.field(default_factory=list)


def _walk(root: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
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


def _scan_folder(root: Path, config: DatasetConfig) -> tuple[list[_Entry], list[Problem]]:
    files, skipped_dirs = _walk(root, config.recursive)
    entries: list[_Entry] = []
    notes: list[Problem] = []
    used_captions: set[Path] = set()
    ignored: list[str] = []
    manifests: list[str] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if _extension_kind(path) is None:
            if path.suffix.lower() == ".txt":
                continue
            (manifests if path.suffix.lower() in MANIFEST_EXTENSIONS else ignored).append(rel)
            continue
        sidecar = path.with_suffix(".txt")
        entry = _Entry(rel, path, None, sidecar.relative_to(root).as_posix())
        if sidecar.is_file():
            used_captions.add(sidecar)
            entry.caption, problem = read_caption_file(sidecar)
            if problem:
                entry.problems.append(problem)
        if not config.allow_outside_root and not _inside(path, root):
            entry.problems.append(_outside_problem(rel, path, root))
        entries.append(entry)
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
        count = sum(1 for d in skipped_dirs for f in d.rglob("*") if f.is_file() and _extension_kind(f))
        if count:
            notes.append(Problem(WARNING, "subfolders_not_scanned", f"{count} media file(s) in subfolders "
                                 f"{_listing([d.name for d in skipped_dirs])} were not loaded", "enable 'recursive' "
                                 "to include subfolders"))
    return entries, notes


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


def _scan_manifest(manifest: Path, root: Path, config: DatasetConfig) -> tuple[list[_Entry], list[Problem]]:
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
            entries.append(_Entry(label, None, None, label, problems=[Problem(
                ERROR, "manifest_entry_invalid", f"entry {number}: {error}", "fix or remove this entry")]))
            continue
        value = row.get(media_column)
        if not isinstance(value, str) or not value.strip():
            entries.append(_Entry(label, None, None, label, problems=[Problem(
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
        entry = _Entry(item_id, path, None if caption is None else normalize_caption(str(caption)),
                       f"{label} '{caption_column or 'caption'}'")
        if not config.allow_outside_root and not _inside(path, root):
            entry.problems.append(_outside_problem(value.strip(), path, root))
        reference = row.get(reference_column) if reference_column else None
        if isinstance(reference, str) and reference.strip():
            entry.reference_path = (manifest.parent / reference.strip()).absolute()
            if not config.allow_outside_root and not _inside(entry.reference_path, root):
                entry.problems.append(_outside_problem(f"reference {reference.strip()}", entry.reference_path, root))
        entries.append(entry)
    if not records:
        notes.append(Problem(ERROR, "manifest_empty", f"{manifest.name} lists no entries", "add entries to it"))
    return entries, notes


def _resolve_source(source: str) -> tuple[Path, Path | None]:
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


def _probe_one(path: Path) -> tuple[str | None, media.MediaInfo | None, Problem | None]:
    try:
        identity = media.media_identity(path)
    except OSError as exc:
        return None, None, Problem(ERROR, "media_missing", f"{path.name} cannot be read ({exc.strerror})",
                                   "check the path and the file's permissions")
    try:
        return identity, media.probe(path), None
    except media.MediaError as exc:
        code = "media_empty" if "empty" in exc.problem else "media_unreadable"
        return identity, None, Problem(ERROR, code, exc.problem, exc.fix)


def _media_problems(entry: _Entry, info: media.MediaInfo) -> list[Problem]:
    problems = []
    expected = _extension_kind(entry.media_path)
    if expected and expected != info.kind:
        right = ".mp4" if info.kind == "video" else ".png"
        problems.append(Problem(WARNING, "wrong_extension", f"the extension says {expected} but the content is a "
                                f"{info.kind} ({info.codec} in {info.container}); it is used as a {info.kind}",
                                f"rename it with a matching extension such as {right}"))
    if info.variable_frame_rate:
        problems.append(Problem(WARNING, "variable_frame_rate", f"variable frame rate (mean {info.fps:.3f} fps)",
                                "handled: frames are picked by timestamp at a constant rate; re-encode at a "
                                "constant rate to control it exactly"))
    if info.rotation:
        problems.append(Problem(INFO, "rotated", f"stored rotated by {info.rotation} degrees",
                                "handled: frames are turned upright when decoded"))
    if info.kind == "video" and info.frames == 1:
        problems.append(Problem(INFO, "single_frame_video", "the clip has a single frame",
                                "handled: it is used like an image (F = 1 buckets)"))
    elif info.kind == "video" and info.frames < 9:
        problems.append(Problem(WARNING, "video_too_short", f"only {info.frames} frames; video buckets need at "
                                "least 9 (8n+1)", "use a longer clip, or export this frame as an image"))
    return problems


def load_dataset(config: DatasetConfig) -> DatasetHandle:
    """Scans, probes and lints the dataset. Raises ``DatasetError`` when the source itself cannot be read and,
    in strict mode, ``StrictModeError`` (carrying the handle) when any item has an error or warning."""
    root, manifest = _resolve_source(config.source)
    if config.trigger_position not in TRIGGER_POSITIONS:
        raise DatasetError(f"Trigger position '{config.trigger_position}' is not one of "
                           f"{', '.join(TRIGGER_POSITIONS)}.")
    entries, notes = _scan_manifest(manifest, root, config) if manifest else _scan_folder(root, config)
    if not entries and not any(p.severity == ERROR for p in notes):
        notes.append(Problem(ERROR, "no_media", f"no media files found in {root}", "add clips ("
                             + ", ".join(media.VIDEO_EXTENSIONS) + ") or images (" + ", ".join(media.IMAGE_EXTENSIONS)
                             + ") with .txt captions of the same name"))

    paths = sorted({p for e in entries for p in (e.media_path, e.reference_path)
                    if p is not None and not any(q.code == "outside_root" for q in e.problems)}, key=str)
    with ThreadPoolExecutor(max_workers=_PROBE_WORKERS) as pool:
        probed = dict(zip(paths, pool.map(_probe_one, paths)))

    items = []
    first_with_identity: dict[str, str] = {}
    for entry in entries:
        item = DatasetItem(item_id=entry.item_id, media_path=str(entry.media_path) if entry.media_path else None,
                           caption="", caption_source=entry.caption_source, problems=list(entry.problems))
        if entry.media_path is not None and entry.media_path in probed:
            item.media_identity, item.info, problem = probed[entry.media_path]
            if problem:
                item.problems.append(problem)
            else:
                item.problems.extend(_media_problems(entry, item.info))
            if item.media_identity and item.info:
                # Same size and same head and tail bytes: a copy, whatever its name or mtime.
                digest = re.sub(r"mtime_ns=\d+;", "", item.media_identity)
                if digest in first_with_identity:
                    item.problems.append(Problem(WARNING, "duplicate_media", f"same content as "
                                                 f"{first_with_identity[digest]}", "delete one copy, or keep both "
                                                 "to train this clip twice as often"))
                else:
                    first_with_identity[digest] = item.item_id
        if entry.reference_path is not None:
            item.reference_path = str(entry.reference_path)
            if entry.reference_path in probed:
                item.reference_identity, item.reference_info, problem = probed[entry.reference_path]
                if problem:
                    item.problems.append(dataclasses.replace(problem, code="reference_" + problem.code,
                                                             message="reference clip: " + problem.message))
        if not any(p.code == "caption_not_utf8" or p.code == "caption_unreadable" for p in item.problems):
            item.problems.extend(_caption_problems(entry.caption, entry.caption_source, config.trigger_word))
        item.caption = apply_trigger(entry.caption or "", config.trigger_word, config.trigger_position)
        items.append(item)

    handle = DatasetHandle(root=str(root), source=str(manifest or root), config=config, items=items, notes=notes)
    handle.fingerprint = _content_fingerprint(handle)
    if config.strict and handle.blocking_problems():
        found = handle.blocking_problems()
        listed = "; ".join(f"{where}: {p.message} (fix: {p.fix})" for where, p in found[:10])
        more = f"; and {len(found) - 10} more" if len(found) > 10 else ""
        raise StrictModeError(f"Strict mode: {len(found)} problem(s) in the dataset {root}: {listed}{more}. Fix them "
                              "or turn strict mode off to exclude failing items and keep going.", handle)
    return handle


def _content_fingerprint(handle: DatasetHandle) -> str:
    blob = json.dumps({"config": dataclasses.asdict(handle.config), "items": [
        [i.item_id, i.media_identity, i.caption, i.reference_identity, i.usable] for i in handle.items]},
        sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def scan_fingerprint(source: str, recursive: bool = False) -> str:
    """A cheap stamp (names, sizes, mtimes; no decoding) that changes when the dataset's files change.

    ComfyUI re-runs the loader when it changes. For a manifest it covers the manifest and every file it lists.
    """
    digest = hashlib.sha256()
    try:
        root, manifest = _resolve_source(source)
    except DatasetError as exc:
        return "unreadable:" + str(exc)
    if manifest is None:
        paths, _ = _walk(root, recursive)
    else:
        paths = [manifest]
        try:
            for _, row, _ in read_manifest_rows(manifest):
                for value in (row or {}).values():
                    if isinstance(value, str) and value.strip() and _extension_kind(Path(value.strip())):
                        paths.append(manifest.parent / value.strip())
        except DatasetError as exc:
            digest.update(str(exc).encode())
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()


def write_report(handle: DatasetHandle, path: str | os.PathLike) -> Path:
    """Writes the lint report (``DatasetHandle.to_json``) as JSON and returns its path."""
    path = Path(path)
    write_text_atomic(path, json.dumps(handle.to_json(), indent=2, ensure_ascii=False))
    return path
