"""The built-in demo dataset: fast, deterministic, real motion, and clean through the loader and trimmer."""

from __future__ import annotations

import time

import torch

from trainer_core.data import media
from trainer_core.data.dataset import DatasetConfig, load_dataset
from trainer_core.data.sample_clips import write_sample_dataset
from trainer_core.data.trimmer import TrimConfig, trim_dataset


def test_demo_dataset_is_fast_deterministic_and_clean(tmp_path):
    started = time.perf_counter()
    paths = write_sample_dataset(tmp_path / "a")
    assert time.perf_counter() - started < 2.0
    again = write_sample_dataset(tmp_path / "b")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]

    handle = load_dataset(DatasetConfig(str(tmp_path / "a"), trigger_word="sks", strict=True))
    assert len(handle.usable_items()) == 4 and not handle.notes
    assert all(i.caption.startswith("sks a red ball") for i in handle.items)
    assert sorted(i.info.frames for i in handle.items) == [17, 17, 25, 33]

    samples = trim_dataset(handle, TrimConfig.from_text("128x96x17;128x96x25")).samples
    assert len(samples) == 4
    pixels = media.load_sample_frames(samples[0])
    assert pixels.shape == (17, 96, 128, 3)
    # The ball moves: consecutive frames differ.
    assert (pixels[1:] - pixels[:-1]).abs().amax(dim=(1, 2, 3)).min() > 0.2
    assert torch.isfinite(pixels).all()
