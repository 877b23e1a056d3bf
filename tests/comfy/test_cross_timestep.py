"""The audio<->video cross-attention AdaLN inputs: training uses the convention the released weights were trained
with (ltx-core since 2026-05-28, ComfyUI after Comfy-Org/ComfyUI#14097), not ComfyUI v0.20.x's.

The reference here is written from ltx-core's description, not from the pack: for each modality, the A<->V
scale/shift AdaLN sees that modality's own per-token sigma x timestep_scale_multiplier, and the gate AdaLN sees the
other modality's sample sigma x av_ca_timestep_scale_multiplier.
"""

from __future__ import annotations

import importlib

import pytest
import tiny_checkpoint as tc
import torch



@pytest.fixture(scope="module")
def denoiser_mod(comfy_pack):
    return importlib.import_module(f"{comfy_pack.module.__name__}.comfy_adapters.denoiser")


def _case(dm, seed=1):
    gen = torch.Generator().manual_seed(seed)
    width = dm.cross_attention_dim + dm.audio_cross_attention_dim
    video = torch.randn(2, 128, 3, 2, 2, generator=gen)
    audio = torch.randn(2, 8, 5, 16, generator=gen)
    v_sigma, a_sigma = torch.tensor([0.8, 0.35]), torch.tensor([0.2, 0.9])
    v_t = v_sigma[:, None].repeat(1, 12)
    v_t[0, :4] = 0.0  # first latent frame given clean on sample 0
    a_t = a_sigma[:, None].repeat(1, 5)
    return video, audio, v_t, a_t, v_sigma, a_sigma, torch.randn(2, 6, width, generator=gen)


def _reference_args(dm, v_t, a_t, v_sigma, a_sigma):
    def embed(adaln, t):
        out, _ = adaln(t.flatten(), {"resolution": None, "aspect_ratio": None}, batch_size=t.shape[0],
                       hidden_dtype=torch.float32)
        return out.view(t.shape[0], -1, out.shape[-1])
    m, av = dm.timestep_scale_multiplier, dm.av_ca_timestep_scale_multiplier
    return {
        "v_cross_scale_shift_timestep": embed(dm.av_ca_video_scale_shift_adaln_single, v_t * m),
        "a_cross_scale_shift_timestep": embed(dm.av_ca_audio_scale_shift_adaln_single, a_t * m),
        "v_cross_gate_timestep": embed(dm.av_ca_a2v_gate_adaln_single, (a_sigma * av)[:, None].expand_as(v_t)),
        "a_cross_gate_timestep": embed(dm.av_ca_v2a_gate_adaln_single, (v_sigma * av)[:, None].expand_as(a_t)),
    }


def _stock(dm, video, audio, v_t, a_t, context, override=None):
    """ComfyUI's own model and blocks; ``override`` replaces the four A<->V AdaLN arguments of every block."""
    replace = {}
    if override is not None:
        def hook(i):
            block = dm.transformer_blocks[i]

            def run(args, extra):
                kwargs = {**args, **override}
                vx, ax = kwargs.pop("img")
                return {"img": block((vx.clone(), ax.clone()), **kwargs)}
            return run
        replace = {("double_block", i): hook(i) for i in range(len(dm.transformer_blocks))}
    return dm([video.clone(), audio.clone()], (v_t, a_t), context, frame_rate=24.0,
              transformer_options={"patches_replace": {"dit": replace}})


@pytest.fixture(scope="module")
def denoiser_input(comfy_pack):
    return importlib.import_module(f"{comfy_pack.module.__name__}.trainer_core.training.denoiser").DenoiserInput


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_training_forward_equals_comfyui_blocks_fed_ltx_core_cross_timesteps(denoiser_mod, denoiser_input):
    dm = tc.random_dit("2.3")
    video, audio, v_t, a_t, v_sigma, a_sigma, context = _case(dm)
    den = denoiser_mod.ComfyLTXDenoiser(dm)
    with torch.no_grad():
        ours = den(denoiser_input(video=video, video_timesteps=v_t, sigma=v_sigma, context=context, fps=24.0,
                                  audio=audio, audio_timesteps=a_t, audio_sigma=a_sigma))
        reference = _stock(dm, video, audio, v_t, a_t, context, _reference_args(dm, v_t, a_t, v_sigma, a_sigma))
        comfy_v020 = _stock(dm, video, audio, v_t, a_t, context)
    assert _rel(ours.video, reference[0]) <= 1e-5 and _rel(ours.audio, reference[1]) <= 1e-5
    # The convention matters: ComfyUI v0.20's own forward gives a clearly different prediction.
    assert _rel(comfy_v020[0], reference[0]) > 1e-3 and _rel(comfy_v020[1], reference[1]) > 1e-3


def test_self_check_compares_against_the_corrected_reference_and_names_the_installed_convention(denoiser_mod):
    dm = tc.random_dit("2.3")
    report = denoiser_mod.check_block_parity(dm, torch.device("cpu"))
    assert report.ok
    assert report.cross_timestep_convention == "comfyui-0.20"


def test_video_only_training_is_unaffected(denoiser_mod, denoiser_input):
    dm = tc.random_dit("2.3")
    video, _, v_t, _, v_sigma, _, context = _case(dm)
    with torch.no_grad():
        ours = denoiser_mod.ComfyLTXDenoiser(dm)(denoiser_input(video=video, video_timesteps=v_t, sigma=v_sigma,
                                                                context=context, fps=24.0)).video
        stock = dm([video.clone()], (v_t, v_sigma), context, frame_rate=24.0, transformer_options={})
    assert _rel(ours, stock if not isinstance(stock, list) else stock[0]) <= 1e-5
