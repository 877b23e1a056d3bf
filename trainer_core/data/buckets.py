"""Resolution buckets ``WxHxF``: parsing, the LTX-2.3 size rules and the choice of a bucket for an item.

LTX-2.3's VAE compresses 32x32 pixels and 8 frames (plus the first) into one latent, so W and H must be multiples
of 32 and F must be 8n+1; F = 1 is a still image.
"""

from __future__ import annotations

import dataclasses
import math
import re

SPATIAL_MULTIPLE = 32
TEMPORAL_STEP = 8


class BucketError(ValueError):
    pass


@dataclasses.dataclass(frozen=True, order=True)
class Bucket:
    width: int
    height: int
    frames: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def is_image(self) -> bool:
        return self.frames == 1


def is_valid_frame_count(frames: int) -> bool:
    return frames >= 1 and (frames - 1) % TEMPORAL_STEP == 0


def largest_valid_frames(available: int) -> int:
    """The largest 8n+1 not above ``available`` (0 when nothing fits)."""
    if available < 1:
        return 0
    return (available - 1) // TEMPORAL_STEP * TEMPORAL_STEP + 1


def nearest_frame_counts(frames: int) -> tuple[int, ...]:
    """Valid frame counts around ``frames``: the one below (if any) and the one above."""
    below = largest_valid_frames(frames)
    above = below + TEMPORAL_STEP if below else 1
    return tuple(v for v in (below, above) if v >= 1 and v != frames) or (frames,)


def nearest_sizes(value: int) -> tuple[int, ...]:
    """Multiples of 32 around ``value``: the one below (if any) and the one above."""
    below = value // SPATIAL_MULTIPLE * SPATIAL_MULTIPLE
    above = below + SPATIAL_MULTIPLE
    return tuple(v for v in (below, above) if v >= SPATIAL_MULTIPLE and v != value) or (value,)


def _alternatives(values: tuple[int, ...]) -> str:
    return " or ".join(str(v) for v in values)


def bucket_problems(width: int, height: int, frames: int) -> list[str]:
    """Everything wrong with one bucket, each with the nearest valid values."""
    problems = []
    for name, value in (("width", width), ("height", height)):
        if value < SPATIAL_MULTIPLE:
            problems.append(f"{name} {value} is below the minimum {SPATIAL_MULTIPLE}")
        elif value % SPATIAL_MULTIPLE:
            nearest = _alternatives(nearest_sizes(value))
            problems.append(f"{name} {value} is not a multiple of {SPATIAL_MULTIPLE} (nearest: {nearest})")
    if frames < 1:
        problems.append(f"frames {frames} must be at least 1 (1 for images, 8n+1 such as 9, 17, 25, 49 for video)")
    elif not is_valid_frame_count(frames):
        problems.append(
            f"frames {frames} is not 8n+1 (nearest: {_alternatives(nearest_frame_counts(frames))}; 1 for images)"
        )
    return problems


_BUCKET = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_buckets(text: str) -> list[Bucket]:
    """Parses ``"WxHxF;WxHxF"`` (``;``, ``,`` or newlines between buckets); duplicates are merged.

    Raises ``BucketError`` naming every bad bucket and the nearest valid values.
    """
    parts = [p for p in re.split(r"[;,\n]+", text or "") if p.strip()]
    if not parts:
        raise BucketError(
            "No buckets given. Write them as WxHxF separated by ';', for example '768x512x49;512x768x49;768x512x1'."
        )
    buckets: list[Bucket] = []
    errors = []
    for part in parts:
        match = _BUCKET.match(part)
        if not match:
            errors.append(f"'{part.strip()}' is not WxHxF (width x height x frames, for example 768x512x49)")
            continue
        width, height, frames = (int(g) for g in match.groups())
        problems = bucket_problems(width, height, frames)
        if problems:
            errors.append(f"'{part.strip()}': " + "; ".join(problems))
        elif (bucket := Bucket(width, height, frames)) not in buckets:
            buckets.append(bucket)
    if errors:
        raise BucketError("Invalid buckets: " + " | ".join(errors))
    return buckets


def format_buckets(buckets: list[Bucket]) -> str:
    return ";".join(str(b) for b in buckets)


def needs_upscale(src_width: int, src_height: int, bucket: Bucket) -> bool:
    """Whether a cover resize into the bucket enlarges the source."""
    return max(bucket.width / src_width, bucket.height / src_height) > 1.0 + 1e-9


def choose_bucket(
    buckets: list[Bucket], width: int, height: int, available_frames: int, no_upscale: bool = False,
) -> Bucket | None:
    """The bucket for an item, as ltx-trainer chooses it among those that fit.

    Single frames (images) go to F = 1 buckets, clips to F > 1 buckets with F <= ``available_frames``; among those the
    closest log-aspect wins, then the most frames, then the largest area. ``no_upscale`` also rules out buckets the
    source would have to be enlarged for.
    """
    fits = [
        b for b in buckets
        if (b.is_image if available_frames == 1 else (not b.is_image and b.frames <= available_frames))
        and not (no_upscale and needs_upscale(width, height, b))
    ]
    if not fits:
        return None
    log_aspect = math.log(width / height)
    return min(fits, key=lambda b: (round(abs(math.log(b.aspect) - log_aspect), 9), -b.frames, -b.area))


def suggest_bucket(width: int, height: int, frames: int, area: int) -> Bucket:
    """A valid bucket with the source's aspect and about ``area`` pixels, to propose in reports."""
    scale = math.sqrt(area / (width * height))
    w = max(SPATIAL_MULTIPLE, int(round(width * scale / SPATIAL_MULTIPLE)) * SPATIAL_MULTIPLE)
    h = max(SPATIAL_MULTIPLE, int(round(height * scale / SPATIAL_MULTIPLE)) * SPATIAL_MULTIPLE)
    return Bucket(w, h, max(1, largest_valid_frames(frames)))
