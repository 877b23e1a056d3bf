"""Training under ComfyUI's default NVIDIA memory mode (dynamic VRAM, ``ModelPatcherDynamic``): every weight is
materialised per use by ``comfy.ops``' vbar path and cached on its module, so after any inference-mode use (the
user sampled, or the trainer's own self-check ran) the cached weights are inference tensors. Training must still
work, give the LoRA the classic patcher gives, and leave the user's model as it was. See ``cpu_dynamic_vram`` for
what of aimdo is emulated on the CPU."""

from __future__ import annotations

import importlib

import pytest
import tiny_checkpoint as tc
import torch
from cpu_dynamic_vram import dynamic_patcher, dynamic_vram

from trainer_core.cache.training_data import InMemoryData, TrainItem
from trainer_core.training.config import recipe_config


@pytest.fixture(scope="module")
def train_on_loaded_model(comfy_pack):
    return importlib.import_module(f"{comfy_pack.module.__name__}.comfy_adapters.training").train_on_loaded_model


def _data(dm) -> InMemoryData:
    gen = torch.Generator().manual_seed(5)
    width = dm.cross_attention_dim + dm.audio_cross_attention_dim
    items = [TrainItem(f"s{i}", torch.randn(dm.in_channels, 2, 2, 3, generator=gen),
                       torch.randn(8, width, generator=gen), fps=24.0) for i in range(2)]
    return InMemoryData(items, empty=torch.zeros(8, width))


def _train(train_on_loaded_model, model, data, out_dir):
    cfg = recipe_config("character", steps=6, rank=4, alpha=4.0, learning_rate=1e-2, seed=1, caption_dropout=0.0,
                        checkpoint_every=100, keep_checkpoints=1, mixed_precision="no")
    with torch.inference_mode():
        run = train_on_loaded_model(model, data, cfg, str(out_dir))
    return run.result


def _fresh_model(comfy_env, ckpt_name):
    import comfy.sd

    path = str(comfy_env.path("models", "checkpoints", ckpt_name))
    with torch.inference_mode():
        model, *_ = comfy.sd.load_checkpoint_guess_config(path, output_vae=False, output_clip=False)
    return model


def test_trains_under_dynamic_vram_after_inference_use_like_the_classic_patcher(
        train_on_loaded_model, comfy_env, tiny_ltx23_ckpt, monkeypatch, tmp_path):
    import comfy.model_patcher as mp

    classic = _fresh_model(comfy_env, tiny_ltx23_ckpt)
    data = _data(classic.model.diffusion_model)
    expected = _train(train_on_loaded_model, classic, data, tmp_path / "classic")
    probe = tc.build_inputs(classic, frames=2, height=2, width=3)

    fresh = _fresh_model(comfy_env, tiny_ltx23_ckpt)  # read before aimdo is on: its file mapping needs CUDA
    with dynamic_vram(monkeypatch):
        model = dynamic_patcher(fresh)
        assert isinstance(model, mp.ModelPatcherDynamic)
        with torch.inference_mode():  # as ComfyUI runs nodes: the user samples first
            before = tc.dit_forward(model, probe)
        dm = model.model.diffusion_model
        cached = [m._v_weight for m in dm.modules() if getattr(m, "_v_weight", None) is not None]
        assert cached and all(w.is_inference() for w in cached), "the cast path must have cached inference tensors"

        result = _train(train_on_loaded_model, model, data, tmp_path / "dynamic")
        with torch.inference_mode():
            after = tc.dit_forward(model, probe)
        assert not any(getattr(m, "weight_function", []) for m in dm.modules()), "nothing may stay on the model"

    assert result.steps_done == 6 and all(torch.isfinite(torch.tensor(result.losses)))
    torch.testing.assert_close(torch.tensor(result.losses), torch.tensor(expected.losses), rtol=1e-5, atol=1e-6)
    got, want = result.lora.effective_weights(), expected.lora.effective_weights()
    assert got.keys() == want.keys()
    for name in want:
        for a, b in zip(got[name], want[name]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    assert any(float(b.abs().max()) > 0 for _, b in got.values()), "the LoRA must have trained"
    for a, b in zip(before, after):
        assert torch.equal(a, b), "the user's model must sample exactly as before training"


def test_the_emulation_reaches_the_failure_the_fix_removes(comfy_pack, comfy_env, tiny_ltx23_ckpt, monkeypatch):
    """Guards the emulation itself: an autograd forward through a cached inference-mode weight fails exactly as
    it did on the GPU (so the test above would catch the bug coming back)."""
    fresh = _fresh_model(comfy_env, tiny_ltx23_ckpt)
    with dynamic_vram(monkeypatch):
        model = dynamic_patcher(fresh)
        with torch.inference_mode():
            tc.dit_forward(model, tc.build_inputs(model, frames=2, height=2, width=3))
        norm = model.model.diffusion_model.transformer_blocks[0].attn1.q_norm
        x = torch.randn(1, 4, norm.weight.shape[0], requires_grad=True)
        with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
            norm(x)
