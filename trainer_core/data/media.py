"""Reading clips and images with PyAV: probing, content identity and bounded, seeking decode of one window.

Time model: a stream's time 0 is its declared start (``stream.start_time``, else pts 0), and source frame k is shown
from its pts until the next frame's pts. Output frame i of a window is the source frame shown at
``start_time + i / fps``, with half a source frame of tolerance so that constant-rate clips map frame for frame even
when their timestamps are rounded (Matroska stores milliseconds). Variable frame rate is therefore handled by the
timestamps themselves: the output is always constant-rate.

Memory: frames are decoded one at a time after a seek to the window, converted to RGB *at the output size* by
swscale and written into one uint8 buffer of the output shape; float conversion happens once, on that buffer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import statistics
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from . import media_webp
from .samples import Sample

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
_IMAGE_CODECS = {"png", "mjpeg", "webp", "bmp", "tiff", "jpegls", "jpeg2000"}
_IDENTITY_CHUNK = 1 << 20
_IDENTITY_SLICES, _IDENTITY_SLICE = 16, 64 << 10


class MediaError(ValueError):
    """A file that cannot be used, with what to do about it."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{Path(path).name}: {problem}. Fix: {fix}")


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    kind: str
    """"video" or "image", from the content (not the extension)."""
    width: int
    height: int
    """Display size: rotation and non-square pixels applied."""
    frames: int
    """Frames counted from the stream's packets, not from container metadata."""
    fps: float | None
    """Nominal rate for constant-rate clips, mean rate for variable-rate ones, None for images."""
    duration: float
    """Seconds covered by the frames (``frames / fps``), 0 for images."""
    last_frame_time: float
    """Seconds from the stream start to the last frame's timestamp."""
    variable_frame_rate: bool
    has_audio: bool
    rotation: int
    """Degrees counter-clockwise the stored picture is turned for display (0, 90, 180, 270)."""
    codec: str
    container: str

    def output_frames_available(self, fps: float | None) -> int:
        """How many frames a window sampled at ``fps`` can hold (1 for images and single frames)."""
        if self.frames <= 1 or not fps:
            return 1
        tolerance = 0.5 / (self.fps or fps)
        return int(math.floor((self.last_frame_time + tolerance) * fps + 1e-9)) + 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> MediaInfo:
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class DecodedWindow:
    pixels: torch.Tensor
    """float32 ``[F, H, W, 3]`` in 0..1."""
    source_times: tuple[float, ...]
    """For each output frame, the timestamp (seconds from the stream start) of the source frame used."""
    frames_decoded: int
    """Source frames the decoder produced, to show that the seek bounded the work."""


def media_identity(path: str | os.PathLike) -> str:
    """Content identity: size and a sha256 of the first and last MiB plus evenly spaced slices between them.

    No timestamps: copying a dataset to another disk or re-writing identical clips keeps its cache valid, while a
    re-export (new container headers and timestamps) always changes the head or tail. Cheap on large files."""
    p = Path(path)
    size = p.stat().st_size
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        digest.update(f.read(_IDENTITY_CHUNK))
        if size > 2 * _IDENTITY_CHUNK:
            span = size - 2 * _IDENTITY_CHUNK
            for k in range(1, _IDENTITY_SLICES + 1):
                f.seek(_IDENTITY_CHUNK + span * k // (_IDENTITY_SLICES + 1))
                digest.update(f.read(_IDENTITY_SLICE))
        if size > _IDENTITY_CHUNK:
            f.seek(max(_IDENTITY_CHUNK, size - _IDENTITY_CHUNK))
            digest.update(f.read(_IDENTITY_CHUNK))
    return f"size={size};sha256={digest.hexdigest()}"


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise MediaError(path, "it has no video or image stream", "use a video or image file")
    return container.streams.video[0]


def _open(path: Path):
    if not path.is_file():
        raise MediaError(path, "file not found", "check the path, or remove the entry from the manifest")
    if path.stat().st_size == 0:
        raise MediaError(path, "the file is empty (0 bytes)", "re-export or re-copy the file, or delete it")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise MediaError(
            path, f"not a readable video or image (FFmpeg: {_ffmpeg_reason(exc)})",
            "the file is truncated, corrupt or not media: re-export or re-download it, or delete it",
        ) from exc


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _origin(stream) -> int:
    return stream.start_time if stream.start_time is not None else 0


def _rotation(frame) -> int:
    # PyAV reports the display matrix angle (counter-clockwise, possibly negative or fractional).
    return int(round((frame.rotation or 0) / 90.0)) % 4 * 90


def _display_size(width: int, height: int, sar, rotation: int) -> tuple[int, int]:
    if sar and sar != 1 and sar > 0:
        width = max(1, int(round(width * float(sar))))
    return (height, width) if rotation in (90, 270) else (width, height)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Reads every video packet header to count frames exactly, and decodes the keyframes.

    Raises ``MediaError`` for missing, empty, unreadable, undecodable or truncated files.
    """
    path = Path(path)
    if media_webp.is_animated(path):
        return media_webp.probe(path)
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        origin = _origin(stream)
        timestamps: list[int] = []
        first_frame = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                timestamps.append(len(timestamps) if ts is None else ts)
                if first_frame is None:
                    first_frame = next(iter(stream.decode(packet)), None)
                elif packet.is_keyframe:
                    # Keyframes only (one per GOP, a small share of the work): damaged packets that a header scan
                    # cannot see surface here rather than in the middle of precompute.
                    stream.decode(packet)
            if first_frame is None:
                first_frame = next(iter(stream.decode(None)), None)
        except av.FFmpegError as exc:
            raise MediaError(
                path,
                f"the data is corrupt or truncated after {len(timestamps)} frames (FFmpeg: {_ffmpeg_reason(exc)})",
                "re-export or re-download the file",
            ) from exc
        if first_frame is None:
            raise MediaError(path, "no frame could be decoded",
                             "re-export the file with a common codec (H.264, PNG, JPEG)")
        declared = stream.frames or 0
        if declared > len(timestamps):
            raise MediaError(
                path, f"truncated: the header declares {declared} frames but only {len(timestamps)} are in the file",
                "re-export or re-download the file",
            )

        rotation = _rotation(first_frame)
        width, height = _display_size(first_frame.width, first_frame.height, stream.sample_aspect_ratio, rotation)
        codec = stream.codec_context.name
        fmt = container.format.name
        has_audio = bool(container.streams.audio)
        nominal = _nominal_rate(stream)
        time_base = stream.time_base or Fraction(1, 1)
        times = sorted(float((ts - origin) * time_base) for ts in timestamps)
        times = [t for t in times if t >= -1e-6] or times[:1]

    is_image = len(times) == 1 and (codec in _IMAGE_CODECS or fmt.endswith("_pipe") or fmt == "image2")
    if is_image or len(times) == 1:
        return MediaInfo(
            kind="image" if is_image else "video", width=width, height=height, frames=1,
            fps=None if is_image else nominal, duration=0.0, last_frame_time=0.0,
            variable_frame_rate=False, has_audio=has_audio, rotation=rotation, codec=codec, container=fmt,
        )
    deltas = [b - a for a, b in zip(times, times[1:])]
    typical = statistics.median(deltas)
    if typical <= 0:
        raise MediaError(path, "its frames have no usable timestamps", "re-export the file (remux with FFmpeg)")
    variable = (max(deltas) - min(deltas)) > 0.5 * typical
    if variable:
        fps = (len(times) - 1) / (times[-1] - times[0])
    elif nominal and abs(nominal * typical - 1) < 0.01:
        fps = nominal
    else:
        fps = 1.0 / typical
    return MediaInfo(
        kind="video", width=width, height=height, frames=len(times), fps=fps, duration=len(times) / fps,
        last_frame_time=times[-1], variable_frame_rate=variable, has_audio=has_audio, rotation=rotation,
        codec=codec, container=fmt,
    )


def _nominal_rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def cover_geometry(src_w: int, src_h: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """Aspect-preserving resize that covers ``out_w x out_h``, then the centre crop offsets: ``(rw, rh, x0, y0)``."""
    scale = max(out_w / src_w, out_h / src_h)
    rw = max(out_w, int(round(src_w * scale)))
    rh = max(out_h, int(round(src_h * scale)))
    return rw, rh, (rw - out_w) // 2, (rh - out_h) // 2


def decode_window(
    path: str | os.PathLike, *, start_time: float, frames: int, fps: float | None, width: int, height: int,
) -> DecodedWindow:
    """Decodes the ``frames`` frames shown at ``start_time + i / fps``, cover-resized and centre-cropped.

    Seeks to the keyframe before the window and stops after its last frame; only output-sized RGB frames are kept.
    """
    path = Path(path)
    if media_webp.is_animated(path):
        return media_webp.decode_window(path, start_time=start_time, frames=frames, fps=fps, width=width,
                                        height=height)
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        source_rate = _nominal_rate(stream) or fps or 25.0
        tolerance = 0.5 / source_rate
        wanted = [start_time + (i / fps if fps else 0.0) for i in range(frames)]
        origin = _origin(stream)
        time_base = stream.time_base or Fraction(1, 1)
        try:
            if start_time - tolerance > 0:
                _seek(container, stream, origin + int(math.floor((start_time - tolerance) / time_base)))
            result = _select_frames(stream, container, wanted, tolerance, origin, time_base, (width, height), path)
            if result is None:
                # The index put the seek past the window start: decode from the beginning instead.
                _seek(container, stream, origin)
                result = _select_frames(stream, container, wanted, tolerance, origin, time_base, (width, height), path)
        except av.FFmpegError as exc:
            raise MediaError(
                path, f"decoding failed inside the window at {start_time:.3f}s (FFmpeg: {_ffmpeg_reason(exc)})",
                "re-export or re-download the file",
            ) from exc
    if result is None:
        raise MediaError(path, f"no frame is shown at {start_time:.3f}s",
                         "re-run the Dataset Loader on the current file")
    return result


def _seek(container, stream, target: int) -> None:
    try:
        container.seek(target, stream=stream, backward=True)
    except av.FFmpegError:
        # Some inputs (piped images, a few GIF muxes) cannot seek: decoding simply starts from the first frame.
        return


def _select_frames(stream, container, wanted, tolerance, origin, time_base, size, path) -> DecodedWindow | None:
    width, height = size
    sar = stream.sample_aspect_ratio
    out = np.empty((len(wanted), height, width, 3), dtype=np.uint8)
    source_times = [0.0] * len(wanted)
    index = 0
    decoded = 0
    held = None  # (time, frame, converted array or None): the frame currently shown
    for frame in container.decode(stream):
        decoded += 1
        # Frames without a timestamp (rare raw streams) are taken as evenly spaced at the source rate.
        t = float((frame.pts - origin) * time_base) if frame.pts is not None else (decoded - 1) * 2 * tolerance
        while index < len(wanted) and t > wanted[index] + tolerance:
            if held is None:
                return None
            held = _emit(held, out, source_times, index, width, height, sar)
            index += 1
        if index == len(wanted):
            break
        held = (t, frame, None)
    while index < len(wanted):
        if held is None or wanted[index] > held[0] + 2 * tolerance:
            shown = "nothing" if held is None else f"{held[0]:.3f}s"
            raise MediaError(
                path, f"the clip ends before {wanted[index]:.3f}s (last frame at {shown})",
                "re-run the Dataset Loader and Frame Trimmer on the current file",
            )
        held = _emit(held, out, source_times, index, width, height, sar)
        index += 1
    pixels = torch.from_numpy(out).to(torch.float32).div_(255.0)
    return DecodedWindow(pixels=pixels, source_times=tuple(source_times), frames_decoded=decoded)


def _emit(held, out, source_times, index, width, height, sar):
    t, frame, array = held
    if array is None:
        array = _to_rgb(frame, width, height, sar)
    out[index] = array
    source_times[index] = t
    return t, frame, array


def _to_rgb(frame, out_w: int, out_h: int, sar) -> np.ndarray:
    rotation = _rotation(frame)
    src_w, src_h = _display_size(frame.width, frame.height, sar, rotation)
    rw, rh, x0, y0 = cover_geometry(src_w, src_h, out_w, out_h)
    # Resize in stored orientation so swscale works on the decoded picture, then turn it for display.
    stored_w, stored_h = (rh, rw) if rotation in (90, 270) else (rw, rh)
    downscale = stored_w * stored_h <= frame.width * frame.height
    rgb = frame.reformat(
        width=stored_w, height=stored_h, format="rgb24", interpolation="AREA" if downscale else "BICUBIC",
    ).to_ndarray()
    if rotation:
        rgb = np.rot90(rgb, k=rotation // 90)
    return rgb[y0:y0 + out_h, x0:x0 + out_w]


def _fit(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def load_sample_frames(sample: Sample, max_side: int | None = None, reference: bool = False) -> torch.Tensor:
    """The sample's pixels: float32 ``[F, H, W, 3]`` in 0..1, exactly ``frames x height x width``.

    ``max_side`` shrinks the output so its longer side is at most that (previews only; the size then differs from
    the sample's). ``reference=True`` decodes ``sample.reference_path`` with the same window and size.
    """
    if reference:
        if not sample.reference_path:
            raise ValueError(f"Sample {sample.sample_id} has no reference clip; check sample.reference_path first.")
        path = sample.reference_path
    else:
        path = sample.media_path
    width, height = _fit(sample.width, sample.height, max_side)
    fps = sample.fps if sample.frames > 1 else None
    return decode_window(
        path, start_time=sample.start_time, frames=sample.frames, fps=fps, width=width, height=height,
    ).pixels


def load_reference_frames(sample: Sample, max_side: int | None = None) -> torch.Tensor:
    """``load_sample_frames`` for the sample's IC-LoRA reference clip."""
    return load_sample_frames(sample, max_side=max_side, reference=True)
