"""Animated WebP, which FFmpeg's WebP decoder cannot read (it stops after the first chunk and calls the file
corrupt). Pillow decodes it; the result follows ``media``'s time model: frame k is shown from the sum of the
durations before it, and a window picks the frame shown at ``start_time + i / fps``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

_VP8X_ANIMATION = 0x02
_ZERO_DURATION_MS = 100
"""What browsers show a frame for when the file says 0 ms (or less than 20 ms)."""


def is_animated(path: str | os.PathLike) -> bool:
    """RIFF/WEBP with an extended header whose animation flag is set; read from the first 21 bytes only."""
    try:
        with open(path, "rb") as f:
            head = f.read(21)
    except OSError:
        return False
    return (len(head) == 21 and head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] == b"VP8X"
            and bool(head[20] & _VP8X_ANIMATION))


def _open(path: Path):
    from PIL import Image

    from .media import MediaError

    try:
        image = Image.open(path)
        image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged files
        raise MediaError(path, f"the animated WebP does not decode ({type(exc).__name__}: {exc})",
                         "re-export it, or convert it to MP4") from exc
    return image


def _durations(image) -> list[float]:
    seconds = []
    for k in range(getattr(image, "n_frames", 1)):
        image.seek(k)
        image.load()  # Pillow fills a frame's duration only once it is decoded
        ms = image.info.get("duration") or 0
        seconds.append((ms if ms >= 20 else _ZERO_DURATION_MS) / 1000.0)
    return seconds


def probe(path: str | os.PathLike):
    from .media import MediaError, MediaInfo

    path = Path(path)
    with _open(path) as image:
        durations = _durations(image)
        width, height = image.size
    frames = len(durations)
    if frames == 0:
        raise MediaError(path, "the animated WebP has no frames", "re-export it")
    times = np.cumsum([0.0] + durations[:-1])
    variable = max(durations) - min(durations) > 0.5 * float(np.median(durations))
    fps = frames / sum(durations)
    if not variable:
        fps = 1.0 / float(np.median(durations))
    return MediaInfo(kind="video" if frames > 1 else "image", width=width, height=height, frames=frames,
                     fps=fps if frames > 1 else None, duration=sum(durations) if frames > 1 else 0.0,
                     last_frame_time=float(times[-1]), variable_frame_rate=variable and frames > 1, has_audio=False,
                     rotation=0, codec="webp", container="webp (animated)")


def decode_window(path: str | os.PathLike, *, start_time: float, frames: int, fps: float | None, width: int,
                  height: int):
    from PIL import Image

    from .media import DecodedWindow, MediaError, cover_geometry

    path = Path(path)
    with _open(path) as image:
        durations = _durations(image)
        starts = np.cumsum([0.0] + durations[:-1])
        tolerance = 0.5 * min(durations)
        wanted = [start_time + (i / fps if fps else 0.0) for i in range(frames)]
        out = np.empty((frames, height, width, 3), dtype=np.uint8)
        shown = []
        for i, t in enumerate(wanted):
            k = int(np.searchsorted(starts, t + tolerance, side="right")) - 1
            if k < 0 or t > starts[-1] + durations[-1] + tolerance:
                raise MediaError(path, f"the animation ends before {t:.3f}s",
                                 "re-run the Dataset Loader and Frame Trimmer on the current file")
            image.seek(k)
            rgb = image.convert("RGB")
            rw, rh, x0, y0 = cover_geometry(rgb.width, rgb.height, width, height)
            resample = Image.Resampling.BOX if rw * rh <= rgb.width * rgb.height else Image.Resampling.BICUBIC
            out[i] = np.asarray(rgb.resize((rw, rh), resample))[y0:y0 + height, x0:x0 + width]
            shown.append(float(starts[k]))
    pixels = torch.from_numpy(out).to(torch.float32).div_(255.0)
    return DecodedWindow(pixels=pixels, source_times=tuple(shown), frames_decoded=len(set(shown)))
