"""Saving audio-video LoRAs: every audio-branch key (audio attention and feed-forward, both audio<->video
attentions) is written under the names ComfyUI's loader maps for LTXAV and loads in stock LoraLoaderModelOnly with
no "lora key not loaded"; the audio half can still be dropped; a LoRA holding NaN is refused by the node."""

from __future__ import annotations

import importlib
import logging

import pytest
import torch
from safetensors import safe_open

SAVE = "LTX23Trainer_SaveComfyLora"


@pytest.fixture(scope="module")
def env(run_node, tiny_ltx23_ckpt, comfy_pack, comfy_env):
    model, _, _ = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    name = comfy_pack.module.__name__
    mods = {k: importlib.import_module(f"{name}.{v}") for k, v in (
        ("lora", "trainer_core.training.lora"), ("file", "trainer_core.output.lora_file"),
        ("den", "comfy_adapters.denoiser"), ("config", "trainer_core.training.config"),
        ("card", "trainer_core.output.lora_card"))}
    dm = model.model.diffusion_model
    targets = mods["lora"].select_targets(mods["den"].ComfyLTXDenoiser(dm).lora_targets(),
                                          mods["config"].RECIPES["audio_video"]["targets"] + ("audio_ff",))
    gen = torch.Generator().manual_seed(5)
    weights = {n: (torch.randn(2, m.in_features, generator=gen) * 0.2, torch.randn(m.out_features, 2, generator=gen)
                   * 0.2) for n, m in targets.items()}
    return dict(model=model, mods=mods, weights=weights, loras=comfy_env.path("models", "loras"))


def _lora(env, weights):
    return env["mods"]["file"].LoraFile(weights=weights, metadata={"base_model_version": "ltx-2.3"},
                                        source_format="ltx23-trainer", rank=2)


def test_audio_keys_load_in_the_stock_loader(run_node, env, caplog):
    weights = env["weights"]
    audio = [n for n in weights if env["mods"]["card"].is_audio_module(n)]
    for part in ("audio_attn1", "audio_attn2", "audio_ff", "audio_to_video_attn", "video_to_audio_attn"):
        assert any(f".{part}." in n for n in audio), part
    name, summary = run_node(SAVE, lora=_lora(env, weights), filename_prefix="av/av_lora", model=env["model"],
                             dtype="fp32")
    with safe_open(str(env["loras"] / name), "pt") as fh:
        keys = set(fh.keys())
        assert fh.metadata()["branches"] == "video+audio"
    assert {f"diffusion_model.{n}.lora_A.weight" for n in audio} <= keys
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        (patched,) = run_node("LoraLoaderModelOnly", model=env["model"], lora_name=name, strength_model=1.0)
    assert not [r.getMessage() for r in caplog.records if "lora key not loaded" in r.getMessage()]
    patched_keys = set(patched.patches) - set(env["model"].patches)
    assert {f"diffusion_model.{n}.weight" for n in weights} == patched_keys
    # The merged audio weight moved by exactly B @ A.
    import comfy.model_management

    probe = next(n for n in audio if "video_to_audio_attn.to_v" in n)
    comfy.model_management.load_models_gpu([env["model"]], force_full_load=True)
    before = env["model"].model.diffusion_model.get_submodule(probe).weight.detach().clone()
    comfy.model_management.load_models_gpu([patched], force_full_load=True)
    after = patched.model.diffusion_model.get_submodule(probe).weight.detach().clone()
    A, B = weights[probe]
    torch.testing.assert_close(after - before, B @ A, rtol=1e-4, atol=1e-6)


def test_dropping_the_audio_half_stays_an_option(run_node, env):
    name, summary = run_node(SAVE, lora=_lora(env, env["weights"]), filename_prefix="av/video_half", keep_audio=False)
    with safe_open(str(env["loras"] / name), "pt") as fh:
        assert not [k for k in fh.keys() if "audio" in k]
    assert "audio-branch dropped" in summary


def test_the_node_refuses_a_nan_gate_lora_and_writes_nothing(run_node, env):
    weights = dict(env["weights"])
    dm = env["model"].model.diffusion_model
    gate = "transformer_blocks.1.audio_attn1.to_gate_logits"
    m = dm.get_submodule(gate)
    weights[gate] = (torch.zeros(2, m.in_features), torch.full((m.out_features, 2), float("nan")))
    before = sorted(p.name for p in env["loras"].rglob("*"))
    with pytest.raises(ValueError, match=r"non-finite.*transformer_blocks\.1\.audio_attn1\.to_gate_logits\.lora_B"):
        run_node(SAVE, lora=_lora(env, weights), filename_prefix="av/nan_lora", drop_untrained=False)
    assert sorted(p.name for p in env["loras"].rglob("*")) == before


def test_loader_sets_the_audio_half_strength_on_its_own(run_node, env):
    name, _ = run_node(SAVE, lora=_lora(env, env["weights"]), filename_prefix="av/per_modality", dtype="fp32")
    model = env["model"]
    both, _ = run_node("LTX23Trainer_LoraLoader", model=model, lora_name=name, strength=1.0)
    video_only, _ = run_node("LTX23Trainer_LoraLoader", model=model, lora_name=name, strength=1.0,
                             audio_strength=0.0)
    is_audio = env["mods"]["card"].is_audio_module
    audio_keys = {f"diffusion_model.{n}.weight" for n in env["weights"] if is_audio(n)}
    new_both, new_video = set(both.patches) - set(model.patches), set(video_only.patches) - set(model.patches)
    assert audio_keys <= new_both and not (audio_keys & new_video)
    assert new_video == new_both - audio_keys
