"""Captioning a dataset with a vision-language text encoder: which clips, which frames, what to ask, what to keep.

The encoder itself is a callable (``Captioner``) so this module stays free of ComfyUI; ``comfy_adapters.captioner``
drives ComfyUI's Gemma. A clip whose caption or frames cannot be read is reported and the run goes on; encoder
errors (out of memory, cancel) stop the run. Progress is journaled after every clip (``caption_store``), so a
stopped run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import textwrap
from typing import Callable, Protocol

import torch

from . import media
from .caption_lint import estimate_tokens
from .caption_prompt import PROMPT_VERSION, build_prompt
from .caption_store import CaptionStore, text_hash
from .captions import apply_trigger, normalize_caption
from .dataset import DatasetHandle, DatasetItem

MODES = ("fill missing only", "keep", "replace")
"""fill missing only: caption clips without a caption. keep: caption every clip for the preview table and write
nothing. replace: caption every clip, keeping each old caption in a backup."""
FRAME_SIDE = 896
"""Gemma 3's vision tower reads 896x896; frames are decoded no larger than that."""


class Captioner(Protocol):
    can_hear: bool
    """Whether the encoder takes the clip's sound (ComfyUI's Gemma 3 path does not)."""

    def __call__(self, prompt: str, frames: torch.Tensor, max_tokens: int, seed: int) -> tuple[str, bool]:
        """``(text, finished)`` for frames ``[F, H, W, 3]`` in 0..1; ``finished`` is False when cut at max_tokens."""


@dataclasses.dataclass(frozen=True)
class CaptionSettings:
    subject: str = ""
    trigger: str = ""
    trigger_position: str = "start"
    mode: str = MODES[0]
    max_tokens: int = 256
    frames_per_clip: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"Caption mode '{self.mode}' is not one of {', '.join(MODES)}.")

    def key(self) -> str:
        """Identifies what a caption depends on (not the mode), for resuming."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "mode"}
        return hashlib.sha256(json.dumps([PROMPT_VERSION, fields], sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass
class CaptionRow:
    item_id: str
    status: str
    """new, replaced, kept, preview, done earlier, failed"""
    caption: str
    detail: str = ""


@dataclasses.dataclass
class CaptionReport:
    rows: list[CaptionRow]
    where: str
    frames_seen: int = 0

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    @property
    def written(self) -> int:
        return self.count("new") + self.count("replaced")

    def text(self, width: int = 100) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("new", "replaced", "kept", "preview", "done earlier",
                                                            "failed") if self.count(s))
        lines = [f"Caption Dataset: {len(self.rows)} items ({counts}); captions in {self.where}.", ""]
        id_width = min(40, max([len(r.item_id) for r in self.rows] + [4]))
        lines.append(f"{'item':<{id_width}}  {'status':<12}  caption")
        indent = " " * (id_width + 16)
        for row in self.rows:
            wrapped = textwrap.wrap(row.caption, width) or [""]
            lines.append(f"{row.item_id[:id_width]:<{id_width}}  {row.status:<12}  {wrapped[0]}")
            lines += [indent + part for part in wrapped[1:]]
            if row.detail:
                lines += [indent + part for part in textwrap.wrap(f"({row.detail})", width)]
        return "\n".join(lines)


def frame_plan(info: media.MediaInfo | None, wanted: int) -> tuple[int, float | None]:
    """``(frames, fps)`` that spread ``wanted`` frames evenly from the first to the last frame."""
    if info is None or info.kind == "image" or info.frames <= 1 or wanted <= 1:
        return 1, None
    frames = min(wanted, info.frames)
    if frames == 1 or info.last_frame_time <= 0:
        return 1, None
    return frames, (frames - 1) / info.last_frame_time


def load_frames(item: DatasetItem, wanted: int) -> torch.Tensor:
    """``[F, H, W, 3]`` frames spread over the clip (one for an image), longer side at most ``FRAME_SIDE``."""
    info = item.info
    frames, fps = frame_plan(info, wanted)
    scale = min(1.0, FRAME_SIDE / max(info.width, info.height))
    width, height = max(1, round(info.width * scale)), max(1, round(info.height * scale))
    return media.decode_window(item.media_path, start_time=0.0, frames=frames, fps=fps, width=width,
                               height=height).pixels


_FENCE = re.compile(r"^```\w*|```$")
_LABEL = re.compile(r"^(caption|training caption)\s*:\s*", re.IGNORECASE)


def clean_caption(raw: str, finished: bool, subject: str) -> tuple[str, list[str]]:
    """Tidies generated text into one caption line; notes say what was changed."""
    notes = []
    text = normalize_caption(_FENCE.sub("", raw.strip()))
    text = _LABEL.sub("", text).strip().strip('"').strip()
    if not finished:
        end = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind("."))
        if end > 0:
            text = text[:end + 1]
        notes.append("cut at max length")
    subject = normalize_caption(subject)
    if subject and not re.search(rf"(?<!\w){re.escape(subject)}(?!\w)", text, flags=re.IGNORECASE):
        text = f"{subject[0].upper()}{subject[1:]}. {text}".strip()
        notes.append("subject phrase added")
    return text, notes


def caption_dataset(handle: DatasetHandle, settings: CaptionSettings, captioner: Captioner,
                    frames_loader: Callable[[DatasetItem, int], torch.Tensor] = load_frames,
                    on_progress: Callable[[int, int], None] | None = None,
                    check_cancel: Callable[[], None] | None = None) -> CaptionReport:
    """Captions the dataset's usable items as ``settings.mode`` says; see ``MODES``."""
    store = CaptionStore(handle)
    key = settings.key()
    done = store.load_journal(key)
    items = handle.usable_items()
    report = CaptionReport(rows=[], where=store.where)
    for index, item in enumerate(items):
        if check_cancel:
            check_cancel()
        report.rows.append(_caption_one(item, settings, captioner, frames_loader, store, done, key, report))
        if on_progress:
            on_progress(index + 1, len(items))
    return report


def _caption_one(item, settings, captioner, frames_loader, store, done, key, report) -> CaptionRow:
    try:
        existing = store.read(item)
    except (OSError, ValueError) as exc:
        return CaptionRow(item.item_id, "failed", "", f"cannot read its caption: {exc}")
    if existing and settings.mode == "fill missing only":
        return CaptionRow(item.item_id, "kept", existing)
    if settings.mode == "replace" and existing and done.get(item.item_id) == text_hash(existing):
        return CaptionRow(item.item_id, "done earlier", existing, "captioned by an earlier run with these settings; "
                          "change the seed to caption it again")
    try:
        frames = frames_loader(item, settings.frames_per_clip)
        info = item.info
        prompt = build_prompt(still=frames.shape[0] == 1, frames=frames.shape[0], duration=info.duration,
                              has_audio=info.has_audio, subject=settings.subject, can_hear=captioner.can_hear)
        raw, finished = captioner(prompt, frames, settings.max_tokens, settings.seed)
    except media.MediaError as exc:
        return CaptionRow(item.item_id, "failed", existing or "", f"{exc.problem}; fix: {exc.fix}")
    report.frames_seen += frames.shape[0]
    text, notes = clean_caption(raw, finished, settings.subject)
    if not text:
        return CaptionRow(item.item_id, "failed", existing or "", "the encoder returned no text; try another seed")
    text = apply_trigger(text, settings.trigger, settings.trigger_position)
    if estimate_tokens(text) > 1024:
        notes.append("long: lower max length")
    if settings.mode == "keep":
        detail = "; ".join(notes + ([f"current: {existing}"] if existing else ["no caption yet"]))
        return CaptionRow(item.item_id, "preview", text, detail)
    backup = store.write(item, text, replacing=bool(existing))
    done[item.item_id] = text_hash(text)
    store.save_journal(key, done)
    if backup is not None:
        notes.append(f"old text kept in {backup.name}")
    return CaptionRow(item.item_id, "replaced" if existing else "new", text, "; ".join(notes))
