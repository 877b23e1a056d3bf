"""The tiny checkpoints load in stock ComfyUI as the model version they claim, and run."""

from __future__ import annotations

import logging

import pytest
import tiny_checkpoint as tc
import torch

LOAD_PROBLEMS = ("unet missing", "unet unexpected", "Missing VAE keys")


@pytest.fixture(params=tc.VERSIONS)
def version_ckpt(request):
    return request.param, request.getfixturevalue(f"tiny_ltx{request.param.replace('.', '')}_ckpt")


def test_loads_as_its_version(version_ckpt, run_node, caplog):
    version, ckpt = version_ckpt
    with caplog.at_level(logging.WARNING):
        model, clip, vae = tc.load_checkpoint(ckpt)
    problems = [r.getMessage() for r in caplog.records if r.getMessage().startswith(LOAD_PROBLEMS)]
    assert not problems, problems
    assert clip is None  # no text encoder in the file: tests inject conditioning
    assert type(model.model).__name__ == "LTXAV"
    assert type(model.get_model_object("latent_format")).__name__ == "LTXAV"
    assert model.get_model_object("model_sampling").shift == pytest.approx(2.37)

    dit = model.model.diffusion_model
    assert tc.is_ltx23(model) == (version == "2.3")
    assert (dit.cross_attention_adaln, dit.caption_proj_before_connector, dit.apply_gated_attention) == (
        (True, True, True) if version == "2.3" else (False, False, False))
    assert len(dit.transformer_blocks) == tc.NUM_LAYERS
    attn1 = dit.transformer_blocks[0].attn1
    assert (attn1.heads, attn1.dim_head) == (tc.VIDEO_HEADS, tc.VIDEO_HEAD_DIM)
    audio_attn1 = dit.transformer_blocks[0].audio_attn1
    assert (audio_attn1.heads, audio_attn1.dim_head) == (tc.AUDIO_HEADS, tc.AUDIO_HEAD_DIM)

    pixels = torch.rand(9, 64, 64, 3)
    (latent,) = run_node("VAEEncode", pixels=pixels, vae=vae)
    assert latent["samples"].shape == (1, 128, 2, 2, 2)


def test_audio_vae_loads(tiny_ltx23_ckpt, run_node):
    (audio_vae,) = run_node("LTXVAudioVAELoader", ckpt_name=tiny_ltx23_ckpt)
    audio = {"waveform": torch.randn(1, 2, 16000) * 0.1, "sample_rate": 16000}
    (latent,) = run_node("LTXVAudioVAEEncode", audio=audio, audio_vae=audio_vae)
    channels, frames, mel_bins = latent["samples"].shape[1:]
    assert (channels, mel_bins) == (8, 16)
    assert abs(frames - 25) <= 1  # 25 latents per second


def test_dit_forward_is_finite(version_ckpt):
    _, ckpt = version_ckpt
    model, _, _ = tc.load_checkpoint(ckpt)
    inputs = tc.build_inputs(model)
    video, audio = tc.dit_forward(model, inputs)
    assert video.shape == inputs["video"].shape and audio.shape == inputs["audio"].shape
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()


def test_stock_sampler_runs_two_steps(tiny_ltx23_ckpt, run_node):
    model, _, _ = tc.load_checkpoint(tiny_ltx23_ckpt)
    inputs = tc.build_inputs(model)
    (av_latent,) = run_node("LTXVConcatAVLatent", video_latent={"samples": torch.zeros_like(inputs["video"])},
                            audio_latent={"samples": torch.zeros_like(inputs["audio"]), "type": "audio"})
    (sampled,) = run_node("KSampler", model=model, seed=0, steps=2, cfg=1.0, sampler_name="euler",
                          scheduler="simple", positive=inputs["conditioning"], negative=inputs["conditioning"],
                          latent_image=av_latent, denoise=1.0)
    video, audio = run_node("LTXVSeparateAVLatent", av_latent=sampled)
    assert video["samples"].shape == inputs["video"].shape
    assert audio["samples"].shape == inputs["audio"].shape
    assert torch.isfinite(video["samples"]).all() and torch.isfinite(audio["samples"]).all()


def test_lora_target_shapes_match_trainer_core_tiny_model(tiny_ltx23_ckpt):
    """A LoRA trained on trainer_core's tiny diffusers DiT must load here: same module names, same shapes."""
    from trainer_core.training.diffusers_denoiser import build_ltx2_transformer

    model, _, _ = tc.load_checkpoint(tiny_ltx23_ckpt)
    ours = {name: m.weight.shape for name, m in model.model.diffusion_model.named_modules()
            if name.startswith("transformer_blocks.") and isinstance(m, torch.nn.Linear)}
    theirs = {name: m.weight.shape for name, m in build_ltx2_transformer("ltx-2.3", "tiny").named_modules()
              if name.startswith("transformer_blocks.") and isinstance(m, torch.nn.Linear)}
    shared = ours.keys() & theirs.keys()
    assert any(".attn1.to_q" in name for name in shared) and any(".audio_ff." in name for name in shared)
    assert {n: ours[n] for n in shared} == {n: theirs[n] for n in shared}
