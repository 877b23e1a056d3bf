"""A tiny built-in dataset for the one-command demo and for tests: synthetic clips with real motion and captions.

Each clip shows a coloured ball moving over a shaded background; each caption names the same subject, so a demo
trigger word has something consistent to bind to. Output is deterministic (same pixels, same captions) and fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np

_SCENES = (
    ("a red ball", (220, 40, 40), (30, 60, 140), "bouncing from left to right across a blue backdrop"),
    ("a red ball", (220, 40, 40), (40, 110, 50), "rolling in a circle over green grass"),
    ("a red ball", (220, 40, 40), (120, 90, 60), "dropping and bouncing on a brown wooden floor"),
    ("a red ball", (220, 40, 40), (90, 90, 100), "sliding diagonally across a grey wall"),
)


def _path(kind: int, t: float) -> tuple[float, float]:
    """Ball centre in 0..1 coordinates at time fraction ``t`` for motion ``kind``."""
    if kind == 0:
        return 0.15 + 0.7 * t, 0.5 - 0.3 * abs(math.sin(3 * math.pi * t))
    if kind == 1:
        return 0.5 + 0.3 * math.cos(2 * math.pi * t), 0.5 + 0.3 * math.sin(2 * math.pi * t)
    if kind == 2:
        return 0.5, 0.2 + 0.6 * abs(math.cos(2.5 * math.pi * t))
    return 0.15 + 0.7 * t, 0.15 + 0.7 * t


def render_frame(scene: int, index: int, frames: int, width: int, height: int) -> np.ndarray:
    _, ball, backdrop, _ = _SCENES[scene % len(_SCENES)]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = (0.6 + 0.4 * y / max(1, height - 1))[..., None]
    rgb = np.asarray(backdrop, dtype=np.float32) * shade
    cx, cy = _path(scene % len(_SCENES), index / max(1, frames - 1))
    radius = 0.12 * min(width, height)
    inside = (x - cx * width) ** 2 + (y - cy * height) ** 2 <= radius**2
    rgb[inside] = ball
    return np.ascontiguousarray(rgb.clip(0, 255).astype(np.uint8))


def write_sample_dataset(
    folder: str | Path, *, clips: int = 4, width: int = 128, height: int = 96, fps: int = 24,
) -> list[Path]:
    """Writes ``clips`` mp4 clips (17 to 33 frames) with ``.txt`` captions into ``folder``; returns the clip paths.

    Width and height must be even (H.264 4:2:0). Existing files of the same names are replaced.
    """
    if width % 2 or height % 2:
        raise ValueError(f"Demo clip size {width}x{height} must be even in both sides (H.264 4:2:0); use e.g. 128x96.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    paths = []
    for n in range(clips):
        frames = 17 + 8 * (n % 3)
        subject, _, _, action = _SCENES[n % len(_SCENES)]
        path = folder / f"demo_{n:02d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.options = {"crf": "18", "threads": "1"} if codec == "libx264" else {}
            for k in range(frames):
                frame = av.VideoFrame.from_ndarray(render_frame(n, k, frames, width, height), format="rgb24")
                frame.pts = k
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        path.with_suffix(".txt").write_text(f"{subject} {action}.\n", encoding="utf-8")
        paths.append(path)
    return paths
