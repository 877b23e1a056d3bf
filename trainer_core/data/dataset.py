"""The Dataset Loader's logic: find media and captions, probe every file, and lint all of it.

Sources are a folder (media with ``.txt`` sidecar captions of the same stem) or an ltx-trainer style manifest
(``.json`` list, ``.jsonl`` or ``.csv``; paths relative to the manifest). Every file and entry the loader sees ends
up in the handle: usable items, excluded items with their reason, and dataset-level notes for files that are not
items (unsupported types, captions without media, folders not scanned). The handle holds paths and metadata only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from . import media
from ..atomic import write_text_atomic
from ..problems import ERROR, INFO, WARNING, Problem, is_blocking, sorted_problems
from .caption_lint import lint_captions
from .captions import TRIGGER_POSITIONS, apply_trigger, caption_problems
from .dataset_scan import (DatasetError, ScanEntry, extension_kind, read_manifest_rows, resolve_source, scan_folder,
                           scan_manifest, walk)

_PROBE_WORKERS = min(8, os.cpu_count() or 1)


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
    subject_phrase: str = ""
    """The words every caption should use for the subject; the caption lint checks it (see ``caption_lint``)."""


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
            f"recursive: {'yes' if self.config.recursive else 'no'}, trigger: {self.config.trigger_word or 'none'}"
            + (f", subject: '{self.config.subject_phrase}'" if self.config.subject_phrase else "") + ")",
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


def _media_problems(entry: ScanEntry, info: media.MediaInfo) -> list[Problem]:
    problems = []
    expected = extension_kind(entry.media_path)
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


def load_dataset(config: DatasetConfig, count_tokens: Callable[[str], int] | None = None) -> DatasetHandle:
    """Scans, probes and lints the dataset. Raises ``DatasetError`` when the source itself cannot be read and,
    in strict mode, ``StrictModeError`` (carrying the handle) when any item has an error or warning.

    ``count_tokens`` counts a caption's text-encoder tokens for the caption lint (an estimate without it)."""
    root, manifest = resolve_source(config.source)
    if config.trigger_position not in TRIGGER_POSITIONS:
        raise DatasetError(f"Trigger position '{config.trigger_position}' is not one of "
                           f"{', '.join(TRIGGER_POSITIONS)}.")
    entries, notes = scan_manifest(manifest, root, config) if manifest else scan_folder(root, config)
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
            item.problems.extend(caption_problems(entry.caption, entry.caption_source, config.trigger_word))
        item.caption = apply_trigger(entry.caption or "", config.trigger_word, config.trigger_position)
        items.append(item)
    by_id = {item.item_id: item for item in items}
    for item_id, problems in lint_captions([(i.item_id, i.caption) for i in items if i.usable],
                                           subject=config.subject_phrase, trigger=config.trigger_word,
                                           count_tokens=count_tokens).items():
        by_id[item_id].problems.extend(problems)

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
    # The subject phrase only steers the caption lint; the data a run trains on does not depend on it.
    config = {k: v for k, v in dataclasses.asdict(handle.config).items() if k != "subject_phrase"}
    blob = json.dumps({"config": config, "items": [
        [i.item_id, i.media_identity, i.caption, i.reference_identity, i.usable] for i in handle.items]},
        sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def scan_fingerprint(source: str, recursive: bool = False) -> str:
    """A cheap stamp (names, sizes, mtimes; no decoding) that changes when the dataset's files change.

    ComfyUI re-runs the loader when it changes. For a manifest it covers the manifest and every file it lists.
    """
    digest = hashlib.sha256()
    try:
        root, manifest = resolve_source(source)
    except DatasetError as exc:
        return "unreadable:" + str(exc)
    if manifest is None:
        paths, _ = walk(root, recursive)
    else:
        paths = [manifest]
        try:
            for _, row, _ in read_manifest_rows(manifest):
                for value in (row or {}).values():
                    if isinstance(value, str) and value.strip() and extension_kind(Path(value.strip())):
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
