"""The Frame Trimmer's logic: turn dataset items into bucketed ``Sample`` recipes, one per window.

Per item: the output frame rate (source rate unless the user resamples), how many output frames the clip can give
at that rate, the bucket (ltx-trainer's rule), and the windows. No pixels are decoded here except for the preview;
every item that yields no sample is reported with the reason and a fix.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
import random
from pathlib import Path

import torch

from . import buckets as bucketing
from . import media
from ..atomic import write_text_atomic
from .buckets import Bucket
from .dataset import DatasetHandle, DatasetItem
from ..problems import ERROR, INFO, WARNING, Problem, sorted_problems
from .samples import Sample

WINDOW_MODES = ("start", "center", "random", "multiple")
_CROP_WARNING = 0.25
"""Share of the picture a crop may discard before the report suggests a better-fitting bucket."""


@dataclasses.dataclass(frozen=True)
class TrimConfig:
    buckets: tuple[Bucket, ...]
    target_fps: float | None = None
    """None keeps each clip's own rate (recorded in the sample; LTX uses it in its positions)."""
    window: str = "start"
    """start, center, random (one window at a seeded random offset) or multiple (non-overlapping windows)."""
    max_windows: int = 4
    """Upper limit of windows per clip in "multiple" mode."""
    seed: int = 0
    no_upscale: bool = False
    """Never enlarge a source: only buckets it covers at scale <= 1 are considered."""

    @classmethod
    def from_text(cls, buckets: str, **kwargs) -> TrimConfig:
        return cls(buckets=tuple(bucketing.parse_buckets(buckets)), **kwargs)

    def __post_init__(self):
        if self.window not in WINDOW_MODES:
            raise ValueError(f"Window mode '{self.window}' is not one of {', '.join(WINDOW_MODES)}.")
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be at least 1 (got {self.max_windows}).")
        if self.target_fps is not None and not (self.target_fps > 0 and math.isfinite(self.target_fps)):
            raise ValueError(f"Target fps must be a positive number, or empty/0 to keep each clip's rate "
                             f"(got {self.target_fps}).")
        if not self.buckets:
            raise ValueError("At least one bucket is needed, for example 768x512x49.")

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["buckets"] = bucketing.format_buckets(list(self.buckets))
        return data


@dataclasses.dataclass
class TrimEntry:
    """What happened to one dataset item."""

    item_id: str
    bucket: str | None
    fps: float | None
    available_frames: int
    """Frames the clip can give at the output rate."""
    window_starts: list[float]
    problems: list[Problem]

    @property
    def included(self) -> bool:
        return bool(self.window_starts)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["included"] = self.included
        return data

    @classmethod
    def from_json(cls, data: dict) -> TrimEntry:
        data = {k: v for k, v in data.items() if k != "included"}
        data["problems"] = [Problem.from_json(p) for p in data["problems"]]
        return cls(**data)


@dataclasses.dataclass
class SamplesHandle:
    """What ``LTX23_SAMPLES`` carries: the sample recipes and the trim report; no decoded frames."""

    dataset_root: str
    dataset_fingerprint: str
    config: TrimConfig
    samples: list[Sample]
    entries: list[TrimEntry]
    fingerprint: str = ""

    def bucket_counts(self) -> dict[str, int]:
        return dict(collections.Counter(s.bucket for s in self.samples).most_common())

    def to_json(self) -> dict:
        return {
            "dataset_root": self.dataset_root,
            "dataset_fingerprint": self.dataset_fingerprint,
            "config": self.config.to_json(),
            "fingerprint": self.fingerprint,
            "buckets": self.bucket_counts(),
            "samples": [dataclasses.asdict(s) for s in self.samples],
            "entries": [e.to_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: dict) -> SamplesHandle:
        config = dict(data["config"])
        config["buckets"] = tuple(bucketing.parse_buckets(config["buckets"]))
        return cls(
            dataset_root=data["dataset_root"], dataset_fingerprint=data["dataset_fingerprint"],
            config=TrimConfig(**config), samples=[Sample(**s) for s in data["samples"]],
            entries=[TrimEntry.from_json(e) for e in data["entries"]], fingerprint=data["fingerprint"],
        )

    def report_text(self) -> str:
        c = self.config
        excluded = [e for e in self.entries if not e.included]
        lines = [
            f"LTX-2.3 frame trim: buckets {bucketing.format_buckets(list(c.buckets))}, fps "
            f"{c.target_fps or 'source'}, window {c.window}"
            + (f" (up to {c.max_windows})" if c.window == "multiple" else "")
            + (", no upscale" if c.no_upscale else ""),
            f"{len(self.samples)} samples from {len(self.entries) - len(excluded)} items; {len(excluded)} items "
            f"excluded.",
            "Samples per bucket: " + (", ".join(f"{b}: {n}" for b, n in self.bucket_counts().items()) or "none"),
            "",
        ]
        for entry in self.entries:
            if entry.included:
                fps = f"{entry.fps:.3f}".rstrip("0").rstrip(".") if entry.fps else "-"
                starts = ", ".join(f"{t:.2f}s" for t in entry.window_starts)
                lines.append(f"OK       {entry.item_id} -> {entry.bucket} @ {fps} fps, windows at {starts}")
            else:
                lines.append(f"EXCLUDED {entry.item_id}")
            lines += [f"         - {p.line()}" for p in sorted_problems(entry.problems)]
        return "\n".join(lines)


def plan_windows(available: int, frames: int, mode: str, max_windows: int = 4,
                 rng: random.Random | None = None) -> list[int]:
    """First output-frame index of each window of ``frames`` frames inside ``available`` frames."""
    if frames > available:
        return []
    slack = available - frames
    if mode == "start":
        return [0]
    if mode == "center":
        return [slack // 2]
    if mode == "random":
        return [(rng or random.Random(0)).randint(0, slack)]
    if mode == "multiple":
        count = min(max_windows, available // frames)
        if count == 1:
            return [slack // 2]
        # Spread the unused frames evenly between windows: first at 0, last ending at the clip's end.
        gap = available - count * frames
        return [k * frames + (gap * k) // (count - 1) for k in range(count)]
    raise ValueError(f"Window mode '{mode}' is not one of {', '.join(WINDOW_MODES)}.")


def _no_bucket_problem(item: DatasetItem, config: TrimConfig, available: int, fps: float | None) -> Problem:
    info = item.info
    single = available == 1
    kind_buckets = [b for b in config.buckets if b.is_image == single]
    label = "image" if single else "video"
    example = bucketing.suggest_bucket(info.width, info.height, 1 if single else available, 768 * 512)
    if not kind_buckets:
        return Problem(ERROR, f"no_{label}_bucket", f"it is a {'single frame' if single else 'clip'} "
                       f"({info.width}x{info.height}) but no bucket has {'F = 1' if single else 'F > 1'}",
                       f"add a {label} bucket such as {example}")
    shortest = min(b.frames for b in kind_buckets)
    if not single and available < shortest:
        best = bucketing.largest_valid_frames(available)
        # The size it would get if it were long enough, with the frames it can give.
        nearest = bucketing.choose_bucket(kind_buckets, info.width, info.height, max(b.frames for b in kind_buckets))
        rate = f" at {fps:.3f}".rstrip("0").rstrip(".") + " fps" if fps else ""
        could = f"at most {best} frames (8n+1)" if best > 1 else "a single frame only"
        return Problem(ERROR, "too_short", f"too short: {available} frames{rate}, the shortest bucket needs "
                       f"{shortest}; it could give {could}",
                       f"add a bucket with {best} frames such as {Bucket(nearest.width, nearest.height, best)}, or "
                       "use a longer clip" if best > 1 else "use a longer clip, or export a frame as an image")
    largest_fit = Bucket(info.width // 32 * 32, info.height // 32 * 32, example.frames)
    fix = "turn off no-upscale"
    if largest_fit.width >= 32 and largest_fit.height >= 32:
        fix += f", or add a bucket it covers without enlarging, such as {largest_fit}"
    return Problem(ERROR, "needs_upscale", f"{info.width}x{info.height} is smaller than every bucket that "
                   "fits it and no-upscale is on", fix)


def _item_problems(info: media.MediaInfo, bucket: Bucket, fps: float | None, source_fps: float | None) -> list[Problem]:
    problems = []
    scale = max(bucket.width / info.width, bucket.height / info.height)
    if scale > 1.0 + 1e-9:
        problems.append(Problem(WARNING, "upscaled", f"enlarged x{scale:.2f} from {info.width}x{info.height} to "
                                f"fill {bucket.width}x{bucket.height}", "use a higher-resolution source, a smaller "
                                "bucket, or turn on no-upscale"))
    kept = (bucket.width * bucket.height) / (info.width * scale * info.height * scale)
    if 1 - kept > _CROP_WARNING:
        better = bucketing.suggest_bucket(info.width, info.height, bucket.frames, bucket.area)
        fix = f"add a bucket with this clip's shape, such as {better}" if better != bucket else \
            f"add a bucket closer to this clip's {info.width}:{info.height} shape"
        problems.append(Problem(WARNING, "heavy_crop", f"the centre crop discards {100 * (1 - kept):.0f}% of the "
                                f"picture ({info.width}x{info.height} into {bucket.width}x{bucket.height})", fix))
    if fps and source_fps and fps > source_fps * 1.001:
        problems.append(Problem(WARNING, "fps_above_source", f"target {fps:g} fps is above the source "
                                f"{source_fps:.3f} fps, so frames repeat", "lower the target fps, or leave it "
                                "empty to keep the source rate"))
    return problems


def _dropped_frames(available: int, bucket: Bucket, windows: int, config: TrimConfig) -> list[Problem]:
    """Every trim that leaves frames unused is reported; when a bucket of the same size with another frame count
    would keep more of the clip, it is named."""
    used = windows * bucket.frames
    if used >= available:
        return []

    def kept(frames: int) -> int:
        count = min(config.max_windows, available // frames) if config.window == "multiple" else 1
        return frames * count

    best = max(range(1, available + 1, 8), key=lambda f: (kept(f), f))
    message = f"uses {used} of its {available} frames ({available - used} dropped) in {bucket}"
    if kept(best) > used:
        better = Bucket(bucket.width, bucket.height, best)
        return [Problem(WARNING, "frames_dropped", message, f"add the bucket {better} to keep {kept(best)} frames"
                        + ("" if config.window == "multiple" else ", or use window 'multiple' for more windows"))]
    return [Problem(INFO, "frames_dropped", message, "none needed: the rest is shorter than another 8n+1 window")]


def trim_item(item: DatasetItem, config: TrimConfig) -> tuple[TrimEntry, list[Sample]]:
    """The windows and samples of one dataset item, or the reason it has none."""
    if not item.usable:
        reasons = "; ".join(p.message for p in item.problems if p.severity == ERROR)
        problem = Problem(ERROR, "excluded_by_loader", f"excluded by the Dataset Loader: {reasons}",
                          "see the Dataset Loader report")
        return TrimEntry(item.item_id, None, None, 0, [], [problem]), []
    info = item.info
    single = info.frames == 1
    fps = None if single else (config.target_fps or info.fps)
    available = info.output_frames_available(fps)
    problems: list[Problem] = []
    if item.reference_info is not None and not single:
        reference_available = item.reference_info.output_frames_available(fps)
        if reference_available < available:
            problems.append(Problem(INFO, "reference_shorter", f"the reference clip "
                                    f"{Path(item.reference_path).name} gives {reference_available} frames, the clip "
                                    f"{available}; windows stay within the reference", "none needed"))
            available = reference_available
    bucket = bucketing.choose_bucket(list(config.buckets), info.width, info.height, available, config.no_upscale)
    if bucket is None:
        problems.append(_no_bucket_problem(item, config, available, fps))
        return TrimEntry(item.item_id, None, fps, available, [], problems), []
    problems += _item_problems(info, bucket, fps, info.fps)
    rng = random.Random(f"{config.seed}:{item.item_id}")
    starts = plan_windows(available, bucket.frames, config.window, config.max_windows, rng)
    if config.window == "multiple" and available // bucket.frames > config.max_windows:
        problems.append(Problem(INFO, "more_windows_possible", f"{available // bucket.frames} windows would fit, "
                                f"{config.max_windows} taken", "raise 'max windows' to use more of the clip"))
    if not single:
        problems += _dropped_frames(available, bucket, len(starts), config)
    start_times = [s / fps if fps else 0.0 for s in starts]
    samples = [
        Sample(
            sample_id=f"{item.item_id}#w{k}", media_path=item.media_path, media_identity=item.media_identity,
            kind=info.kind, caption=item.caption, width=bucket.width, height=bucket.height, frames=bucket.frames,
            fps=float(fps or info.fps or 1.0), start_time=t, reference_path=item.reference_path,
            reference_identity=item.reference_identity,
        )
        for k, t in enumerate(start_times)
    ]
    return TrimEntry(item.item_id, str(bucket), fps, available, start_times, problems), samples


def trim_dataset(dataset: DatasetHandle, config: TrimConfig) -> SamplesHandle:
    """Samples for every usable item; every item, included or not, has an entry saying what happened."""
    entries, samples = [], []
    for item in dataset.items:
        entry, item_samples = trim_item(item, config)
        entries.append(entry)
        samples.extend(item_samples)
    handle = SamplesHandle(dataset.root, dataset.fingerprint, config, samples, entries)
    blob = json.dumps([dataset.fingerprint, config.to_json(), [s.cache_key() for s in samples]], sort_keys=True)
    handle.fingerprint = hashlib.sha256(blob.encode()).hexdigest()
    return handle


def preview_tiles(handle: SamplesHandle, per_bucket: int = 3, tile: int = 256) -> tuple[torch.Tensor, list[str]]:
    """First frame of up to ``per_bucket`` samples per bucket, letterboxed into ``tile`` squares: ``[N, T, T, 3]``.

    Also returns a message for each sample whose frame could not be decoded (its tile stays grey).
    """
    chosen: dict[str, list[Sample]] = collections.defaultdict(list)
    for sample in handle.samples:
        if len(chosen[sample.bucket]) < per_bucket:
            chosen[sample.bucket].append(sample)
    picks = [s for group in chosen.values() for s in group]
    tiles = torch.full((max(1, len(picks)), tile, tile, 3), 0.5)
    failures = []
    for n, sample in enumerate(picks):
        scale = tile / max(sample.width, sample.height)
        w, h = max(1, round(sample.width * scale)), max(1, round(sample.height * scale))
        try:
            frame = media.decode_window(sample.media_path, start_time=sample.start_time, frames=1, fps=None,
                                        width=w, height=h).pixels[0]
        except media.MediaError as exc:
            failures.append(f"{sample.sample_id}: {exc}")
            continue
        y0, x0 = (tile - h) // 2, (tile - w) // 2
        tiles[n, y0:y0 + h, x0:x0 + w] = frame
    return tiles, failures


def write_report(handle: SamplesHandle, path: str | os.PathLike) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(handle.to_json(), indent=2, ensure_ascii=False))
    return path
