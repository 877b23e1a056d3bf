"""Cache layer and encoders of Latent Precompute: keys, atomic files, the reader's errors, the tiny diffusers VAE."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

from trainer_core.cache import latent_cache as lc
from trainer_core.cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from trainer_core.data.samples import Sample

BF16 = torch.bfloat16


def sample(**kw) -> Sample:
    base = dict(sample_id="a.mp4#w0", media_path="/data/a.mp4", media_identity="id-a", kind="video",
                caption="tok a cat", width=64, height=64, frames=9, fps=24.0, start_time=0.0)
    return Sample(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_vae():
    return build_tiny_vae(seed=0)


def test_keys_separate_pixels_caption_and_encoders():
    s = sample()
    mk, tk = lc.media_key(s, "vae1", BF16), lc.text_key(s.caption, "te1", BF16)
    # A caption edit keeps the video latents; a new window or source does not.
    assert lc.media_key(dataclasses.replace(s, caption="other"), "vae1", BF16) == mk
    assert lc.media_key(dataclasses.replace(s, sample_id="renamed", media_path="/moved.mp4"), "vae1", BF16) == mk
    for changed in (dict(media_identity="id-b"), dict(start_time=1.0), dict(fps=25.0), dict(width=96),
                    dict(reference_identity="r")):
        assert lc.media_key(dataclasses.replace(s, **changed), "vae1", BF16) != mk, changed
    assert lc.media_key(s, "vae2", BF16) != mk
    assert lc.media_key(s, "vae1", torch.float32) != mk
    assert lc.audio_key(s, "vae1", BF16) != mk
    assert lc.text_key("tok a dog", "te1", BF16) != tk
    assert lc.text_key(s.caption, "te2", BF16) != tk


def test_write_tensors_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "text" / "k.safetensors")
    lc.write_tensors(path, {"context": torch.ones(2, 3)}, {"format": lc.FORMAT, "key": "k"})
    assert lc.stored_key(path) == "k"

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(lc, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        lc.write_tensors(path, {"context": torch.zeros(2, 3)}, {"format": lc.FORMAT, "key": "k2"})
    assert os.listdir(tmp_path / "text") == ["k.safetensors"]
    assert lc.stored_key(path) == "k"


def test_stored_key_rejects_foreign_and_torn_files(tmp_path):
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    assert lc.stored_key(str(torn)) is None
    assert lc.stored_key(str(tmp_path / "missing.safetensors")) is None
    foreign = str(tmp_path / "foreign.safetensors")
    lc.write_tensors(foreign, {"x": torch.ones(1)}, {"key": "k"})
    assert lc.stored_key(foreign) is None


def test_reader_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run Latent Precompute"):
        lc.LatentCache(str(tmp_path))
    lc.write_json(str(tmp_path / lc.MANIFEST), {"format": lc.FORMAT, "complete": False})
    with pytest.raises(ValueError, match="interrupted"):
        lc.LatentCache(str(tmp_path))
    (tmp_path / lc.MANIFEST).write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(ValueError, match="new folder"):
        lc.LatentCache(str(tmp_path))


def test_diffusers_encoder_normalises_means(tiny_vae):
    enc = DiffusersVideoEncoder(tiny_vae, tiling="never")
    frames = torch.rand(1, 9, 64, 96, 3, generator=torch.Generator().manual_seed(1))
    latents = enc.encode(frames)
    assert latents.shape == (1, 128, 2, 2, 3)
    with torch.no_grad():
        means = tiny_vae.encode(frames.permute(0, 4, 1, 2, 3) * 2 - 1).latent_dist.mean
    expected = (means - tiny_vae.latents_mean.view(1, -1, 1, 1, 1)) / tiny_vae.latents_std.view(1, -1, 1, 1, 1)
    torch.testing.assert_close(latents, expected)
    assert enc.decode(latents).shape == (1, 9, 64, 96, 3)
    assert enc.encode(frames[:, :1]).shape == (1, 128, 1, 2, 3)


def test_diffusers_encoder_identity_tracks_weights(tiny_vae):
    assert DiffusersVideoEncoder(tiny_vae).identity == DiffusersVideoEncoder(build_tiny_vae(seed=0)).identity
    assert DiffusersVideoEncoder(tiny_vae).identity != DiffusersVideoEncoder(build_tiny_vae(seed=1)).identity


def test_diffusers_encoder_rejects_non_buckets(tiny_vae):
    enc = DiffusersVideoEncoder(tiny_vae)
    with pytest.raises(ValueError, match="multiples of 32"):
        enc.encode(torch.rand(1, 9, 48, 64, 3))
    with pytest.raises(ValueError, match="8n\\+1"):
        enc.encode(torch.rand(1, 8, 64, 64, 3))


def test_tiled_encode_is_the_tiles_encoded_apart(tiny_vae):
    tiny_vae.tile_sample_min_height = tiny_vae.tile_sample_min_width = 64
    tiny_vae.tile_sample_stride_height = tiny_vae.tile_sample_stride_width = 32
    try:
        frames = torch.rand(1, 9, 64, 128, 3, generator=torch.Generator().manual_seed(2))
        tiled = DiffusersVideoEncoder(tiny_vae, tiling="always").encode(frames)
        whole = DiffusersVideoEncoder(tiny_vae, tiling="never").encode(frames)
        first_tile = DiffusersVideoEncoder(tiny_vae, tiling="never").encode(frames[:, :, :, :64])
    finally:
        tiny_vae.tile_sample_min_height = tiny_vae.tile_sample_min_width = 512
        tiny_vae.tile_sample_stride_height = tiny_vae.tile_sample_stride_width = 448
    assert tiled.shape == whole.shape == (1, 128, 2, 2, 4)
    assert not tiny_vae.use_tiling
    # The left tile's latents are that tile encoded on its own, normalised like a whole encode; the seams make the
    # rest differ from the whole encode (64 px tiles are far smaller than this VAE's receptive field), but it is
    # still the same picture.
    torch.testing.assert_close(tiled[..., :2], first_tile[..., :2])
    assert not torch.allclose(tiled, whole)
    assert torch.corrcoef(torch.stack([tiled.flatten(), whole.flatten()]))[0, 1] > 0.6


def test_stand_in_text_conditioner():
    te = StandInTextConditioner(width=24, length=16)
    a, b, a2, empty = te.encode(["tok a cat", "tok a dog", "tok a cat", ""])
    assert a.shape == empty.shape == (16, 24)
    assert torch.equal(a, a2) and not torch.equal(a, b)
    assert torch.equal(a[3:], b[3:]) and torch.equal(empty, te._registers)
    assert StandInTextConditioner(seed=1).identity != te.identity
