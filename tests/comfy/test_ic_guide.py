"""IC-LoRA through ComfyUI's LTX model: the training forward's reference tokens are the guide ComfyUI samples with."""

from __future__ import annotations

import importlib

import pytest
import tiny_checkpoint as tc
import torch


@pytest.fixture(scope="module")
def pack_modules(comfy_pack):
    name = comfy_pack.module.__name__
    return lambda sub: importlib.import_module(f"{name}.{sub}")


@pytest.mark.parametrize("factor", [1, 2])
def test_training_reference_tokens_equal_comfyui_ic_guide_sampling_forward(pack_modules, factor):
    """The pack's training forward (reference tokens at the strategy's positions) predicts what ComfyUI's model
    predicts for the same latent conditioned with the small-grid IC guide it samples with (LTXVAddGuide's
    append_keyframe on a dilated reference), and a different reference changes the prediction."""
    from comfy_extras import nodes_lt

    den = pack_modules("comfy_adapters.denoiser")
    guide = pack_modules("comfy_adapters.ic_guide")
    positions = pack_modules("trainer_core.training.positions")
    DenoiserInput = pack_modules("trainer_core.training.denoiser").DenoiserInput
    dm = tc.random_dit("2.3", torch.float64)
    gen = torch.Generator().manual_seed(1)
    f, h, w = 3, 4, 4
    x = torch.randn(1, 128, f, h, w, generator=gen, dtype=torch.float64)
    ref = torch.randn(1, 128, f, h // factor, w // factor, generator=gen, dtype=torch.float64)
    context = torch.randn(1, 6, tc.context_width("2.3"), generator=gen, dtype=torch.float64)
    sigma = torch.tensor([0.7], dtype=torch.float64)
    n_ref = f * (h // factor) * (w // factor)

    def ours(reference):
        inputs = DenoiserInput(
            video=x, video_timesteps=sigma.expand(1, f * h * w).clone(), sigma=sigma, context=context, fps=24.0,
            reference=reference, reference_timesteps=torch.zeros(1, n_ref, dtype=torch.float64),
            reference_positions=positions.reference_positions(f, h // factor, w // factor, factor, 1))
        with torch.no_grad():
            return den.ComfyLTXDenoiser(dm)(inputs).video

    positive, negative, latent = guide.add_reference_guide([[context, {}]], [[context, {}]], {"samples": x}, ref,
                                                           factor)
    mask = latent["noise_mask"].expand(-1, -1, -1, h, w)  # the sampler hands the model a full-size mask
    # What ComfyUI's LTXAV model_base.process_timestep hands the model: mask * sigma, patchified.
    token_t = dm.patchifier.patchify(mask * sigma.view(1, 1, 1, 1, 1))[0][..., 0]
    with torch.no_grad():
        stock = dm([latent["samples"]], (token_t, sigma), context, frame_rate=24.0,
                   keyframe_idxs=nodes_lt.get_keyframe_idxs(positive)[0], denoise_mask=mask)
    stock = stock[0] if isinstance(stock, (list, tuple)) else stock
    trained = ours(ref)
    assert trained.shape == x.shape
    assert torch.allclose(trained, stock[:, :, :f], rtol=1e-9, atol=1e-10)
    assert not torch.allclose(ours(torch.randn_like(ref)), trained, atol=1e-6)
    _, _, cropped = guide.crop_reference_guide(positive, negative, latent)
    assert cropped["samples"].shape == x.shape
