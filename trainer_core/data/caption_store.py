"""Where the Caption Dataset node reads and writes captions, and how it remembers finished clips.

Folder datasets keep captions in ``clip.txt`` sidecars; manifest datasets in the manifest's ``caption`` column.
Every write is atomic. A caption that is replaced is first copied, and never overwritten:

* sidecar ``clips/a.txt`` -> ``clips/.a.txt.bak-1`` (then ``-2``, ...): beside the caption, hidden so the Dataset
  Loader does not report it as a stray file;
* manifest ``dataset.json`` -> ``.dataset.json.bak-1`` once per run, before the run's first change.

The journal (``.ltx23_captions.json`` in the dataset folder, one per manifest) records, per item, the hash of the
caption a run wrote and the settings it used. A run with the same settings skips those items, which is what makes
a cancelled "replace" run resumable without captioning finished clips again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

from ..atomic import atomic_path, write_text_atomic
from .captions import normalize_caption, read_caption_file
from .dataset import DatasetHandle, DatasetItem
from .dataset_scan import CAPTION_COLUMNS, read_manifest_rows

_MANIFEST_ROW = re.compile(r"^(?P<name>.+)#(?P<number>\d+) ")


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_caption(text).encode()).hexdigest()[:16]


def next_backup(path: Path) -> Path:
    """``.name.bak-<n>`` beside ``path`` with the first unused ``n``."""
    n = 1
    while (path.parent / f".{path.name}.bak-{n}").exists():
        n += 1
    return path.parent / f".{path.name}.bak-{n}"


class CaptionStore:
    """Reads and writes the caption of each item of one dataset (folder sidecars or manifest column)."""

    def __init__(self, handle: DatasetHandle):
        self.root = Path(handle.root)
        source = Path(handle.source)
        self.manifest = source if source.is_file() else None
        self.journal_path = self.root / (f".ltx23_captions-{self.manifest.name}.json" if self.manifest
                                         else ".ltx23_captions.json")
        self._manifest_backed_up = False

    @property
    def where(self) -> str:
        return f"the '{CAPTION_COLUMNS[0]}' column of {self.manifest.name}" if self.manifest else ".txt sidecars"

    def sidecar(self, item: DatasetItem) -> Path:
        return Path(item.media_path).with_suffix(".txt")

    def _row_number(self, item: DatasetItem) -> int:
        match = _MANIFEST_ROW.match(item.caption_source)
        if not match:
            raise ValueError(f"{item.item_id}: cannot tell which manifest entry it came from "
                             f"({item.caption_source!r}); re-run the Dataset Loader.")
        return int(match["number"])

    def read(self, item: DatasetItem) -> str | None:
        """The caption as stored now (no trigger inserted), or None when there is none."""
        if self.manifest is None:
            path = self.sidecar(item)
            if not path.is_file():
                return None
            text, problem = read_caption_file(path)
            if problem:
                raise ValueError(f"{path}: {problem.message}. Fix: {problem.fix}")
            return text
        number = self._row_number(item)
        for n, row, _ in read_manifest_rows(self.manifest):
            if n == number and row is not None:
                value = row.get(CAPTION_COLUMNS[0])
                return None if value is None else normalize_caption(str(value))
        return None

    def write(self, item: DatasetItem, text: str, replacing: bool) -> Path | None:
        """Stores ``text`` as the item's caption; with ``replacing``, first keeps the old text. Returns the backup."""
        if self.manifest is None:
            path = self.sidecar(item)
            backup = None
            if replacing and path.exists():
                backup = next_backup(path)
                shutil.copy2(path, backup)
            write_text_atomic(path, text + "\n")
            return backup
        backup = None
        if not self._manifest_backed_up:
            backup = next_backup(self.manifest)
            shutil.copy2(self.manifest, backup)
            self._manifest_backed_up = True
        self._write_manifest_caption(self._row_number(item), text)
        return backup

    def _write_manifest_caption(self, number: int, text: str) -> None:
        column = CAPTION_COLUMNS[0]
        raw = self.manifest.read_bytes().decode("utf-8-sig")
        ext = self.manifest.suffix.lower()
        if ext == ".json":
            rows = json.loads(raw)
            rows[number - 1][column] = text
            out = json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
        elif ext == ".jsonl":
            lines = raw.splitlines()
            row = json.loads(lines[number - 1])
            row[column] = text
            lines[number - 1] = json.dumps(row, ensure_ascii=False)
            out = "\n".join(lines) + "\n"
        else:
            reader = csv.DictReader(io.StringIO(raw))
            fields = list(reader.fieldnames or [])
            rows = list(reader)
            if column not in fields:
                fields.append(column)
            rows[number - 2][column] = text
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            out = buffer.getvalue()
        with atomic_path(self.manifest) as tmp:
            tmp.write_text(out, encoding="utf-8")

    def load_journal(self, settings_key: str) -> dict[str, str]:
        """Item id -> caption hash written by earlier runs with these settings (empty for other settings)."""
        try:
            data = json.loads(self.journal_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return dict(data.get("done", {})) if data.get("settings") == settings_key else {}

    def save_journal(self, settings_key: str, done: dict[str, str]) -> None:
        write_text_atomic(self.journal_path, json.dumps({"settings": settings_key, "done": done}, indent=1))
