"""Latent Precompute inside ComfyUI, on a tiny LTX-2.3 checkpoint's VAE, audio VAE and text connectors.

ComfyUI's Gemma 3 12B cannot be built tiny, so a stand-in CLIP returns raw (unprocessed) conditioning of the
width the tiny 2.3 DiT's connectors take (cross + audio cross = 24, as the real 4096 + 2048), flagged
``unprocessed_ltxav_embeds`` as ComfyUI's LTX text encoder flags it.
"""

from __future__ import annotations


import pytest
import tiny_checkpoint as tc
import torch
from safetensors.torch import load_file

from comfy_harness import FakeClip
from media_factory import write_clip
from trainer_core.data.samples import Sample

NODE_ID = "LTX23Trainer_LatentPrecompute"


@pytest.fixture
def setup(tmp_path, run_node, comfy_pack, tiny_ltx23_ckpt):
    from trainer_core.data.media import media_identity

    model, _, vae = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    (audio_vae,) = run_node("LTXVAudioVAELoader", ckpt_name=tiny_ltx23_ckpt)
    dit = model.model.diffusion_model
    calls = []
    original = dit.preprocess_text_embeds

    def counting(context, unprocessed=False):
        calls.append((tuple(context.shape), unprocessed, torch.is_inference(context)))
        return original(context, unprocessed=unprocessed)

    dit.preprocess_text_embeds = counting
    clip_path = write_clip(tmp_path / "clip.mp4", width=80, height=48, frames=20, audio=True)
    common = dict(media_path=clip_path, media_identity=media_identity(clip_path), kind="video", width=64,
                  height=64, frames=9, fps=24.0)
    samples = [Sample(sample_id="clip.mp4#w0", caption="tok a red fox", start_time=0.0, **common),
               Sample(sample_id="clip.mp4#w1", caption="tok a red fox", start_time=0.4, **common)]
    yield dict(model=model, vae=vae, audio_vae=audio_vae, dit=dit, calls=calls, original=original,
               samples=samples, clip=FakeClip(tc.context_width("2.3")), node=comfy_pack.nodes[NODE_ID],
               folder=str(tmp_path / "cache"))
    del dit.preprocess_text_embeds


def run(run_node, s, **kw):
    inputs = dict(samples=s["samples"], vae=s["vae"], clip=s["clip"], model=s["model"], cache_folder=s["folder"],
                  storage_dtype="fp32", decode_check=0)
    inputs.update(kw)
    return run_node(s["node"], **inputs)


def test_connectors_run_exactly_once_per_text(run_node, setup):
    s = setup
    handle, summary, _ = run(run_node, s, validation_prompts="a fox at dusk\n\n")
    texts = ["tok a red fox", "", "a fox at dusk"]
    assert sorted(s["clip"].encoded) == sorted(texts)
    assert len(s["calls"]) == 3
    assert all(unprocessed and not inference for _, unprocessed, inference in s["calls"])
    assert handle.context_shape == (1024, 24)  # registers pad every caption to max(1024, L) tokens

    cache = handle.open()
    for text, context in [("tok a red fox", cache.item(0).context), ("", cache.empty_context()),
                          ("a fox at dusk", cache.prompt_context("a fox at dusk"))]:
        with torch.no_grad():
            expected = s["original"](s["clip"].raw(text), unprocessed=True)[0]
        torch.testing.assert_close(context, expected, rtol=0, atol=0)
        # What the trainer feeds back as conditioning passes through the DiT unchanged: connectors not re-run.
        assert torch.equal(s["original"](context[None], unprocessed=False)[0], context)
    assert "2 samples" in summary

    s["calls"].clear()
    s["clip"].encoded.clear()
    again, _, _ = run(run_node, s, validation_prompts="a fox at dusk")
    assert s["calls"] == [] and s["clip"].encoded == []
    assert again.fingerprint == handle.fingerprint


def test_video_latents_equal_comfy_vae_encode(run_node, setup):
    from trainer_core.data.media import load_sample_frames

    s = setup
    handle, _, preview = run(run_node, s, decode_check=2)
    cache = handle.open()
    for i, sample in enumerate(s["samples"]):
        (latent,) = run_node("VAEEncode", pixels=load_sample_frames(sample), vae=s["vae"])
        torch.testing.assert_close(cache.item(i).video_latents, latent["samples"][0].float())
        assert cache.item(i).fps == 24.0
    assert preview.shape == (9, 64, 64, 3)
    import comfy.model_management as mm

    assert any(lm.model is s["vae"].patcher for lm in mm.current_loaded_models)  # VAEEncode loaded it
    out = run(run_node, s, decode_check=1)
    assert out.ui["images"][0]["filename"].endswith(".mp4") and out.ui["ltx23_report"][0]["text"].startswith("Latent cache")
    assert not any(lm.model is s["vae"].patcher for lm in mm.current_loaded_models)


def test_audio_latents_through_the_audio_vae(run_node, setup):
    s = setup
    handle, _, _ = run(run_node, s, audio=True, audio_vae=s["audio_vae"])
    item = handle.open().item(0)
    assert item.audio_latents.shape[0] == 8 and item.audio_latents.shape[2] == 16
    assert abs(item.audio_latents.shape[1] - 9 / 24 * 25) <= 1  # 25 latents per second of the 9-frame window
    assert handle.has_audio
    with pytest.raises(ValueError, match="audio VAE"):
        run(run_node, s, audio=True)


def test_cancel_between_samples_then_resume(run_node, setup):
    import comfy.model_management as mm

    s = setup
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(run_node, s)
    finally:
        mm.interrupt_current_processing(False)
    handle, _, _ = run(run_node, s)
    assert handle.num_samples == 2
    media = load_file(f"{s['folder']}/{handle.open().entries[0]['media']}")
    assert media["video_latents"].shape == (128, 2, 2, 2)
