"""Captions: reading sidecar files, normalising whitespace, inserting the trigger word once."""

from __future__ import annotations

import re
from pathlib import Path

from ..problems import ERROR, WARNING, Problem

TRIGGER_POSITIONS = ("start", "end")


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


def caption_problems(caption: str | None, source: str, trigger: str) -> list[Problem]:
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
