"""Dataset and trimming hardening (issue 11, items 2, 4 and 7) on real files: damaged packets caught by the
loader, dropped frames and shared captions reported, animated WebP decoded, clearer fixes, and relative folders
kept inside ComfyUI's folders."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from media_factory import index_frame, read_index, write_clip, write_image
from trainer_core.data import media
from trainer_core.data.dataset import DatasetConfig, load_dataset
from trainer_core.data.trimmer import TrimConfig, trim_dataset
from trainer_core.paths import resolve_under


def _codes(problems):
    return {p.code: p for p in problems}


def test_loader_decodes_keyframes_so_damaged_packets_are_caught(tmp_path):
    root = tmp_path / "ds"
    clip = write_clip(root / "bad.mp4", frames=48, width=96, height=64, codec="mpeg4", faststart=True, gop=8)
    data = bytearray(clip.read_bytes())
    rng = random.Random(0)
    start = int(len(data) * 0.6)
    for i in range(start, start + len(data) // 5):
        data[i] = rng.randrange(256)
    clip.write_bytes(bytes(data))
    write_clip(root / "good.mp4", frames=17)
    for name in ("bad", "good"):
        (root / f"{name}.txt").write_text(name)
    items = {i.item_id: i for i in load_dataset(DatasetConfig(str(root))).items}
    assert items["good.mp4"].usable
    problem = _codes(items["bad.mp4"].problems)["media_unreadable"]
    assert "corrupt or truncated" in problem.message and "re-export" in problem.fix


def test_trim_that_drops_frames_is_reported_with_a_bucket_that_keeps_more(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "long.mp4", frames=48)
    write_clip(root / "near.mp4", frames=20)
    write_clip(root / "exact.mp4", frames=17)
    for name in ("long", "near", "exact"):
        (root / f"{name}.txt").write_text(name)
    entries = {e.item_id: e for e in trim_dataset(load_dataset(DatasetConfig(str(root))),
                                                  TrimConfig.from_text("64x32x17")).entries}
    long = _codes(entries["long.mp4"].problems)["frames_dropped"]
    assert long.severity == "warning" and long.message == "uses 17 of its 48 frames (31 dropped) in 64x32x17"
    assert "add the bucket 64x32x41 to keep 41 frames" in long.fix and "multiple" in long.fix
    near = _codes(entries["near.mp4"].problems)["frames_dropped"]
    assert near.severity == "info" and "3 dropped" in near.message
    assert "frames_dropped" not in _codes(entries["exact.mp4"].problems)
    multi = trim_dataset(load_dataset(DatasetConfig(str(root))),
                         TrimConfig.from_text("64x32x17", window="multiple", max_windows=2))
    dropped = _codes({e.item_id: e for e in multi.entries}["long.mp4"].problems)["frames_dropped"]
    assert "uses 34 of its 48 frames" in dropped.message and "64x32x41 to keep 41" in dropped.fix


def test_files_sharing_a_caption_are_warned(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "a.mp4", frames=17)
    write_image(root / "a.png")
    write_clip(root / "b.mp4", frames=9)
    (root / "a.txt").write_text("a red car")
    (root / "b.txt").write_text("b")
    items = {i.item_id: i for i in load_dataset(DatasetConfig(str(root))).items}
    for name, other in (("a.mp4", "a.png"), ("a.png", "a.mp4")):
        shared = _codes(items[name].problems)["caption_shared"]
        assert shared.severity == "warning" and shared.message == f"its caption a.txt is also used by {other}"
    assert "caption_shared" not in _codes(items["b.mp4"].problems)


def test_animated_webp_is_read_as_a_clip(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    frames = [Image.fromarray(index_frame(k, 96, 64)) for k in range(20)]
    frames[0].save(root / "anim.webp", save_all=True, append_images=frames[1:], duration=40, loop=0, lossless=True)
    (root / "anim.txt").write_text("an animation")
    info = media.probe(root / "anim.webp")
    assert (info.kind, info.frames, info.fps, info.width, info.height) == ("video", 20, 25.0, 96, 64)
    handle = trim_dataset(load_dataset(DatasetConfig(str(root))), TrimConfig.from_text("96x64x9", window="center"))
    sample = handle.samples[0]
    assert [read_index(f.numpy()) for f in media.load_sample_frames(sample)] == list(range(5, 14))
    write_image(root / "still.webp")  # a plain WebP still goes through FFmpeg as before
    assert media.probe(root / "still.webp").kind == "image"


def test_short_reference_and_short_clip_messages(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "a.mp4", frames=40, width=96, height=64)
    write_clip(root / "a_ref.mp4", frames=30, width=96, height=64)
    write_clip(root / "short.mp4", frames=12, width=96, height=64)
    (root / "d.json").write_text(json.dumps([{"video": "a.mp4", "caption": "x", "reference_video": "a_ref.mp4"},
                                             {"video": "short.mp4", "caption": "y"}]))
    entries = trim_dataset(load_dataset(DatasetConfig(str(root / "d.json"))), TrimConfig.from_text("96x64x17")).entries
    assert "the reference clip a_ref.mp4 gives 30 frames" in _codes(entries[0].problems)["reference_shorter"].message
    too_short = _codes(entries[1].problems)["too_short"]
    assert "fps" not in too_short.fix and "96x64x9" in too_short.fix and "longer clip" in too_short.fix


def test_relative_folders_stay_under_the_comfy_folder(tmp_path):
    base = tmp_path / "ComfyUI" / "input"
    (base / "ds").mkdir(parents=True)
    assert resolve_under("ds", str(base), "dataset folder") == str(base / "ds")
    assert resolve_under("ds/../ds", str(base), "dataset folder") == str(base / "ds")
    assert resolve_under("/etc", str(base), "dataset folder") == "/etc"
    with pytest.raises(ValueError, match=r"dataset folder '\.\./\.\./\.\./\.\./etc' leads outside ComfyUI's input "
                                         r"folder .*absolute path"):
        resolve_under("../../../../etc", str(base), "dataset folder")
    with pytest.raises(ValueError, match="leads outside"):
        resolve_under("ds/../../input2", str(base), "dataset folder")
