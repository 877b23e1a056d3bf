"""LoRA targeting, hooks, and the strength the saved file carries."""

import pytest
import torch

from gradcheck import assert_matches_finite_differences
from tiny import tiny_data, tiny_denoiser
from trainer_core.training.denoiser import DenoiserInput
from trainer_core.training.lora import TARGET_PRESETS, LoraSet, select_targets


def test_presets_select_the_expected_modules():
    d = tiny_denoiser()
    candidates = d.lora_targets()
    video = select_targets(candidates, ["video_attn"])
    assert len(video) == 2 * 2 * 4
    assert all(".attn1." in n or ".attn2." in n for n in video)
    assert "transformer_blocks.0.audio_attn1.to_q" not in video
    assert len(select_targets(candidates, ["video_ff"])) == 2 * 2
    assert len(select_targets(candidates, ["av_cross_attn"])) == 2 * 2 * 4
    everything = select_targets(candidates, list(TARGET_PRESETS))
    assert len(everything) == 2 * (6 * 4 + 2 * 2)
    # PEFT-style suffixes mean what they mean in ltx-trainer configs: `to_k` hits every attention's to_k.
    assert len(select_targets(candidates, ["to_k"])) == 2 * 6
    assert list(select_targets(candidates, ["attn1.to_q"])) == [
        "transformer_blocks.0.attn1.to_q", "transformer_blocks.1.attn1.to_q"]
    with pytest.raises(ValueError, match="matches no module"):
        select_targets(candidates, ["attn9.to_q"])


def _forward(d, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 128, 2, 2, 3, generator=gen)
    ctx = torch.randn(1, 8, sum(d.context_widths()), generator=gen)
    return d(DenoiserInput(video=x, video_timesteps=torch.full((1, 12), 0.6), sigma=torch.tensor([0.6]),
                           context=ctx, fps=24.0)).video


def test_hooks_apply_exactly_the_merged_delta_and_leave_the_model_untouched():
    d = tiny_denoiser()
    targets = select_targets(d.lora_targets(), ["video_attn", "video_ff"])
    lora = LoraSet(targets, rank=4, alpha=8, seed=1)
    with torch.no_grad():
        for a in lora.adapters:
            a.lora_B.normal_(0, 0.05)
    before = _forward(d)
    with lora.attached():
        hooked = _forward(d)
    assert torch.equal(_forward(d), before), "detaching must restore the base model exactly"
    assert not torch.allclose(hooked, before)
    with torch.no_grad():
        for name, (A, B) in lora.effective_weights().items():
            targets[name].weight += B @ A
    assert torch.allclose(_forward(d), hooked, atol=1e-5, rtol=1e-5)


def test_state_roundtrip_and_warm_start_scale():
    d = tiny_denoiser()
    targets = select_targets(d.lora_targets(), ["video_attn"])
    a = LoraSet(targets, rank=4, alpha=4, seed=1)
    with torch.no_grad():
        for ad in a.adapters:
            ad.lora_B.normal_()
    b = LoraSet(targets, rank=4, alpha=4, seed=2)
    b.load_state(a.state())
    assert all(torch.equal(x, y) for x, y in zip(a.trainable_parameters(), b.trainable_parameters()))
    c = LoraSet(targets, rank=4, alpha=16, seed=3)
    assert c.warm_start(a.effective_weights()) == []
    for (_, (A1, B1)), (_, (A2, B2)) in zip(a.effective_weights().items(), c.effective_weights().items()):
        assert torch.allclose(B1 @ A1, B2 @ A2, atol=1e-6)
    with pytest.raises(ValueError, match="same rank"):
        LoraSet(targets, rank=2, alpha=2).warm_start(a.effective_weights())


# diffusers computes RoPE and the RMSNorm variance in float32 whatever the model's dtype, which leaves float32
# rounding noise larger than any finite-difference step. For the float64 check these two are swapped for the same
# formulas in the input's dtype, each first proven equal to the library's in float32.


def _split_rope_keeping_dtype(x, freqs):
    cos, sin = freqs
    reshaped = x.ndim != 4 and cos.ndim == 4
    if reshaped:
        b, h, t, _ = cos.shape
        x = x.reshape(b, t, h, -1).swapaxes(1, 2)
    r = x.shape[-1] // 2
    first, second = x[..., :r], x[..., r:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
    return out.swapaxes(1, 2).reshape(b, t, -1) if reshaped else out


def _rms_norm_keeping_dtype(self, x):
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
    if self.weight is not None:
        x = x * self.weight
        if self.bias is not None:
            x = x + self.bias
    return x


def test_float64_gradients_match_central_finite_differences(monkeypatch):
    """Only a finite-difference check proves the training forward's gradients right, with and without
    per-block gradient checkpointing."""
    from diffusers.models.transformers import transformer_ltx2

    x32 = torch.randn(1, 6, 16)
    freqs = (torch.rand(1, 2, 6, 4), torch.rand(1, 2, 6, 4))
    assert torch.allclose(_split_rope_keeping_dtype(x32, freqs), transformer_ltx2.apply_split_rotary_emb(x32, freqs),
                          atol=1e-6), "the float64 stand-in must compute what diffusers computes"
    from diffusers.models.normalization import RMSNorm

    for affine in (False, True):
        norm = RMSNorm(16, eps=1e-6, elementwise_affine=affine)
        assert torch.allclose(_rms_norm_keeping_dtype(norm, x32), norm(x32), atol=1e-6)
    monkeypatch.setattr(transformer_ltx2, "apply_split_rotary_emb", _split_rope_keeping_dtype)
    monkeypatch.setattr(RMSNorm, "forward", _rms_norm_keeping_dtype)
    d = tiny_denoiser(dtype=torch.float64)
    targets = select_targets(d.lora_targets(), ["video_attn", "video_ff"])
    lora = LoraSet(targets, rank=2, alpha=2, seed=0)
    lora.double()
    with torch.no_grad():
        for a in lora.adapters:
            a.lora_B.normal_(0, 0.1)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 128, 2, 2, 2, generator=gen, dtype=torch.float64)
    ctx = torch.randn(1, 6, sum(d.context_widths()), generator=gen, dtype=torch.float64)
    proj = torch.randn(1, 128, 2, 2, 2, generator=gen, dtype=torch.float64)
    inputs = DenoiserInput(video=x, video_timesteps=torch.full((1, 8), 0.4, dtype=torch.float64),
                           sigma=torch.tensor([0.4], dtype=torch.float64), context=ctx, fps=25.0)

    def scalar():
        return (d(inputs).video * proj).sum()

    probes = [(lora.adapters[0].lora_A, (1, 3)), (lora.adapters[5].lora_B, (2, 1)), (lora.adapters[-1].lora_A, (0, 7))]
    with lora.attached():
        for checkpointing in (False, True):
            d.set_gradient_checkpointing(checkpointing)
            for p in lora.trainable_parameters():
                p.grad = None
            with torch.enable_grad():
                scalar().backward()
            assert_matches_finite_differences(scalar, probes, rel=1e-6, abs=1e-9)
    d.set_gradient_checkpointing(False)


def test_data_helper_widths_follow_the_model():
    d20 = tiny_denoiser("ltx-2.0")
    assert d20.context_widths() == (32, 32)
    assert tiny_denoiser().context_widths() == (16, 8)
    assert tiny_data(d20, n=1).items[0].context.shape == (8, 64)
