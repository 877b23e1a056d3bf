"""IC-LoRA data: pairs from a manifest or clip.ref.mp4 sidecars, pair lint naming the reference, derived references
and reference latents at a downscale factor in the cache."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from media_factory import write_clip

from trainer_core.cache import latent_cache as lc
from trainer_core.cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from trainer_core.cache.precompute import precompute
from trainer_core.cache.references import ReferenceSpec, derive
from trainer_core.data.dataset import DatasetConfig, load_dataset
from trainer_core.data.samples import Sample


def _items(handle):
    return {i.item_id: i for i in handle.items}


def _codes(item):
    return {p.code for p in item.problems}


def test_sidecar_pairs_and_pair_lint_name_the_reference(tmp_path):
    write_clip(tmp_path / "good.mp4", frames=17)
    write_clip(tmp_path / "good.ref.mp4", frames=17)
    write_clip(tmp_path / "short.mp4", frames=25)
    write_clip(tmp_path / "short.ref.mp4", frames=9)
    write_clip(tmp_path / "wide.mp4", frames=17)
    write_clip(tmp_path / "wide.ref.mov", frames=17, width=96, height=48)
    write_clip(tmp_path / "alone.mp4", frames=17)
    for name in ("good", "short", "wide", "alone"):
        (tmp_path / f"{name}.txt").write_text(f"{name} clip")
    items = _items(load_dataset(DatasetConfig(str(tmp_path))))
    assert set(items) == {"good.mp4", "short.mp4", "wide.mp4", "alone.mp4"}, "sidecar references are not clips"
    assert items["good.mp4"].reference_path.endswith("good.ref.mp4") and items["good.mp4"].usable
    assert not {c for c in _codes(items["good.mp4"]) if c.startswith("reference")}
    assert items["alone.mp4"].reference_path is None
    short = next(p for p in items["short.mp4"].problems if p.code == "reference_shorter")
    assert "short.ref.mp4" in short.message and "short.ref.mp4" in short.fix
    wide = next(p for p in items["wide.mp4"].problems if p.code == "reference_aspect")
    assert "wide.ref.mov" in wide.message and "96x48" in wide.message


def test_manifest_reference_missing_is_an_error_naming_the_file(tmp_path):
    write_clip(tmp_path / "a.mp4")
    write_clip(tmp_path / "b.mp4")
    write_clip(tmp_path / "b.ref.mp4")
    rows = [{"video": "a.mp4", "caption": "a", "reference_video": "refs/a_edges.mp4"},
            {"video": "b.mp4", "caption": "b"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    items = _items(load_dataset(DatasetConfig(str(tmp_path / "d.json"))))
    missing = next(p for p in items["a.mp4"].problems if p.code == "reference_missing")
    assert "a_edges.mp4" in missing.message and not items["a.mp4"].usable
    assert items["b.mp4"].reference_path.endswith("b.ref.mp4"), "rows without the column fall back to the sidecar"


def _edge_frame():
    frame = torch.zeros(1, 64, 64, 3)
    frame[:, :, 32:] = 1.0
    return frame


def test_derived_references():
    frames = torch.rand(2, 64, 96, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(derive(frames, "inverted"), 1 - frames)
    gray = derive(frames, "grayscale")
    assert torch.equal(gray[..., 0], gray[..., 2]) and gray.shape == frames.shape
    low = derive(frames, "low resolution")
    assert low.shape == frames.shape and low.std() < frames.std()
    edges = derive(_edge_frame(), "edges")[0, :, :, 0]
    assert edges[:, 30:34].min() == 1.0, "the step between the halves is an edge"
    assert edges[:, :28].max() == 0.0 and edges[:, 36:].max() == 0.0, "flat areas are not"
    assert derive(torch.full((1, 32, 32, 3), 0.5), "edges").max() == 0.0


@pytest.fixture(scope="module")
def encoders():
    return DiffusersVideoEncoder(build_tiny_vae(seed=0), tiling="never"), StandInTextConditioner(width=24, length=16)


def _sample(**kw):
    base = dict(sample_id="a.mp4#w0", media_path="/d/a.mp4", media_identity="a", kind="video", caption="x",
                width=128, height=64, frames=9, fps=24.0, start_time=0.0, reference_path="/d/a.ref.mp4",
                reference_identity="ra")
    return Sample(**{**base, **kw})


def _frames(sample):
    gen = torch.Generator().manual_seed(len(sample.media_identity))
    return torch.rand(sample.frames, sample.height, sample.width, 3, generator=gen)


def _ref_frames(sample):
    return torch.rand(sample.frames, sample.height, sample.width, 3, generator=torch.Generator().manual_seed(9))


def test_reference_latents_at_the_downscale_factor_and_keyed_by_it(tmp_path, encoders):
    video, text = encoders
    s = _sample()

    def run(spec, samples=(s,)):
        return precompute(list(samples), str(tmp_path), video_encoder=video, text_conditioner=text,
                          frame_loader=_frames, reference_loader=_ref_frames, reference=spec)

    report = run(ReferenceSpec(downscale_factor=2))
    item = lc.LatentCache(str(tmp_path)).item(0)
    assert item.video_latents.shape == (128, 2, 2, 4) and item.reference_latents.shape == (128, 2, 1, 2)
    # Encoded from the reference frames averaged over 2x2 pixel blocks.
    small = F.avg_pool2d(_ref_frames(s).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    expected = video.encode(small[None])[0].to(torch.bfloat16)
    assert torch.allclose(item.reference_latents.float(), expected.float(), atol=1e-2)
    assert report.computed["media"] == 1
    assert run(ReferenceSpec(downscale_factor=2)).computed["media"] == 0
    assert run(ReferenceSpec(downscale_factor=1)).computed["media"] == 1
    edges = run(ReferenceSpec("edges", 2), [dataclasses.replace(s, reference_path=None, reference_identity=None)])
    assert edges.computed["media"] == 1 and lc.LatentCache(str(tmp_path)).item(0).reference_latents.shape[2:] == (1, 2)


def test_a_factor_that_breaks_32_alignment_fails_before_encoding(tmp_path, encoders):
    video, text = encoders
    with pytest.raises(ValueError, match=r"factor 4 .*a.mp4#w0.*128x64.*32x16"):
        precompute([_sample()], str(tmp_path), video_encoder=video, text_conditioner=text, frame_loader=_frames,
                   reference_loader=_ref_frames, reference=ReferenceSpec(downscale_factor=4))
    assert not any((tmp_path / "media").glob("*")), "no latent was written"
