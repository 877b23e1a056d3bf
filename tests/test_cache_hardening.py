"""Hardening of Latent Precompute and the cache (issue 11, items 1-3) with real files: an over-long caption, a clip
whose packets do not decode, and cache files truncated or damaged in place."""

from __future__ import annotations

import random

import pytest
import safetensors.torch
import torch

from trainer_core.cache import integrity
from trainer_core.cache import latent_cache as lc
from trainer_core.cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from trainer_core.cache.precompute import precompute
from trainer_core.cache.training_data import InMemoryData, TrainItem
from trainer_core.data import media
from trainer_core.data.samples import Sample
from trainer_core.training.config import recipe_config
from trainer_core.training.trainer import LoraTrainer

from media_factory import write_clip
from tiny import tiny_denoiser

WIDTH = 24  # context width of the tiny LTX-2.3 DiT


def corrupt_clip(path, source_kw=None):
    """An H.264 clip whose header and packet index are intact but whose later packets are garbage."""
    write_clip(path, frames=48, width=96, height=64, faststart=True, gop=8, **(source_kw or {}))
    data = bytearray(path.read_bytes())
    rng = random.Random(0)
    start = int(len(data) * 0.6)
    for i in range(start, start + len(data) // 5):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


def sample_of(path, caption, frames=17):
    return Sample(sample_id=f"{path.name}#w0", media_path=str(path), media_identity=media.media_identity(path),
                  kind="video", caption=caption, width=64, height=64, frames=frames, fps=24.0, start_time=0.0)


@pytest.fixture(scope="module")
def video_encoder():
    return DiffusersVideoEncoder(build_tiny_vae(seed=0), tiling="never")


LONG = " ".join(f"word{i}" for i in range(40))


def test_long_caption_is_cut_to_the_window_reported_and_trains_with_dropout(tmp_path, video_encoder):
    clips = [write_clip(tmp_path / f"c{i}.mp4", frames=17 + 8 * i, width=64, height=64) for i in range(2)]
    samples = [sample_of(clips[0], "a short caption"), sample_of(clips[1], LONG)]
    text = StandInTextConditioner(width=WIDTH, length=16, grow=True)
    report = precompute(samples, str(tmp_path / "cache"), video_encoder=video_encoder, text_conditioner=text)
    cache = lc.LatentCache(str(tmp_path / "cache"))
    assert {tuple(cache.item(i).context.shape) for i in range(2)} == {(16, WIDTH)}
    assert tuple(cache.empty_context().shape) == (16, WIDTH)
    assert len(report.truncated) == 1 and "c1.mp4#w0" in report.truncated[0] and "40 tokens" in report.truncated[0]
    assert "WARNING: caption of samples c1.mp4#w0" in report.summary()
    assert cache.notes() == [f"precompute warning: {report.truncated[0]}"]
    # The kept rows are the caption's first 16, unchanged.
    assert torch.equal(cache.item(1).context.float(), text.encode([LONG])[0][:16].to(torch.bfloat16).float())
    again = precompute(samples, str(tmp_path / "cache"), video_encoder=video_encoder, text_conditioner=text)
    assert again.computed["text"] == 0 and again.truncated == report.truncated  # still reported when reused

    cfg = recipe_config("character", steps=12, rank=2, alpha=2, caption_dropout=0.5, checkpoint_every=100,
                        gradient_checkpointing=False, mixed_precision="no")
    result = LoraTrainer(tiny_denoiser(), cache, cfg, tmp_path / "run").run()
    assert result.steps_done == 12 and all(torch.isfinite(torch.tensor(result.losses)))


def test_trainer_checks_every_context_before_step_one(tmp_path):
    denoiser = tiny_denoiser()
    gen = torch.Generator().manual_seed(0)
    items = [TrainItem(f"clip{i}.mp4", torch.randn(128, 2, 2, 3, generator=gen),
                       torch.randn(8 if i < 2 else 11, WIDTH, generator=gen), 24.0) for i in range(3)]
    data = InMemoryData(items, empty=torch.zeros(8, WIDTH))
    with pytest.raises(ValueError, match=r"clip2\.mp4 \(11, 24\).*re-run Latent Precompute"):
        LoraTrainer(denoiser, data, recipe_config("character", steps=5), tmp_path)


def test_undecodable_clip_is_reported_and_the_rest_is_encoded(tmp_path, video_encoder):
    good = [write_clip(tmp_path / f"good{i}.mp4", frames=17 + 8 * i, width=64, height=64) for i in range(2)]
    bad = corrupt_clip(tmp_path / "bad.mp4")
    assert media.probe(bad).frames == 48  # its header and packet index read fine
    samples = [sample_of(good[0], "one"), sample_of(bad, "two", frames=41), sample_of(good[1], "three")]
    report = precompute(samples, str(tmp_path / "cache"), video_encoder=video_encoder,
                        text_conditioner=StandInTextConditioner(width=WIDTH, length=16), batch_size=2)
    assert [f.sample_id for f in report.failed] == ["bad.mp4#w0"]
    failure = report.failed[0]
    assert failure.path.endswith("bad.mp4") and "FFmpeg" in failure.reason and "re-export" in failure.fix
    assert "FAILED: 1 sample(s)" in report.summary() and "bad.mp4" in report.summary()
    cache = lc.LatentCache(str(tmp_path / "cache"))
    assert [e["sample_id"] for e in cache.entries] == ["good0.mp4#w0", "good1.mp4#w0"]
    assert cache.notes()[0].startswith("left out by precompute: bad.mp4#w0 (") and "FFmpeg" in cache.notes()[0]
    assert all(torch.isfinite(cache.item(i).video_latents.float()).all() for i in range(len(cache)))


def test_every_clip_failing_stops_with_the_list(tmp_path, video_encoder):
    bad = corrupt_clip(tmp_path / "bad.mp4")
    with pytest.raises(ValueError, match=r"(?s)no sample could be encoded.*bad\.mp4"):
        precompute([sample_of(bad, "x", frames=41)], str(tmp_path / "cache"), video_encoder=video_encoder,
                   text_conditioner=StandInTextConditioner(width=WIDTH, length=16))


def _cache_with_two(tmp_path, video_encoder):
    clips = [write_clip(tmp_path / f"c{i}.mp4", frames=17 + 8 * i, width=64, height=64) for i in range(2)]
    samples = [sample_of(clips[0], "first"), sample_of(clips[1], "second")]
    text = StandInTextConditioner(width=WIDTH, length=16)
    precompute(samples, str(tmp_path / "cache"), video_encoder=video_encoder, text_conditioner=text)
    return samples, text, lc.LatentCache(str(tmp_path / "cache"))


def test_truncated_cache_file_is_named_before_training_and_mid_run(tmp_path, video_encoder):
    _, _, cache = _cache_with_two(tmp_path, video_encoder)
    path = tmp_path / "cache" / cache.entries[1]["media"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"latent cache file {path}.*truncated or damaged"):
        cache.item(1)
    lines = integrity.verify_cache(cache)
    assert len(lines) == 1 and "c1.mp4#w0" in lines[0] and str(path) in lines[0] and "truncated" in lines[0]
    assert [e["sample_id"] for e in cache.entries] == ["c0.mp4#w0"] and "c1.mp4#w0" in cache.excluded
    assert cache.fingerprint() != cache.manifest["fingerprint"]


def test_same_size_damage_is_found_and_repaired_by_precompute(tmp_path, video_encoder):
    samples, text, cache = _cache_with_two(tmp_path, video_encoder)
    path = tmp_path / "cache" / cache.entries[0]["media"]
    original = path.read_bytes()
    data = bytearray(original)
    data[-64:] = bytes(64)  # zeroed tensor bytes: the header still parses and still names the right key
    path.write_bytes(bytes(data))
    assert lc.is_valid(str(tmp_path / "cache"), "media", path.stem)
    lines = integrity.verify_cache(lc.LatentCache(str(tmp_path / "cache")))
    assert len(lines) == 1 and "c0.mp4#w0" in lines[0] and "sha256" in lines[0]
    report = precompute(samples, str(tmp_path / "cache"), video_encoder=video_encoder, text_conditioner=text)
    assert report.repaired == [cache.entries[0]["media"]] and report.computed["media"] == 1
    assert torch.equal(safetensors.torch.load_file(path)["video_latents"],
                       safetensors.torch.load(original)["video_latents"])
    assert integrity.verify_cache(lc.LatentCache(str(tmp_path / "cache"))) == []


def test_damaged_empty_caption_stops_with_the_fix(tmp_path, video_encoder):
    _, _, cache = _cache_with_two(tmp_path, video_encoder)
    path = tmp_path / "cache" / cache.manifest["empty_text"]
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(8) if data[-8:] != bytes(8) else b"\x01" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="empty caption's context.*re-run Latent Precompute"):
        integrity.verify_cache(cache)
