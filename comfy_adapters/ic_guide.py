"""IC-LoRA reference guides on ComfyUI's LTX model, for training and for sampling.

ComfyUI's LTX model takes extra clean tokens as *guides*: latent frames appended after the video, a
``denoise_mask`` whose negative entries drop tokens, and ``keyframe_idxs`` with the guides' RoPE positions. A
reference downscaled by ``s`` is *dilated* onto the full latent grid (ComfyUI-LTXVideo's small-grid IC guide): its
tokens sit on every ``s``-th row and column, the holes are masked out, and the positions span ``s`` target tokens,
which is exactly where ltx-trainer's ``video_to_video`` places them. Training and the Validation Sweep both go
through this file, so a LoRA is sampled with the reference where it was trained with it.
"""

from __future__ import annotations

import torch

from ..trainer_core.training.denoiser import DenoiserInput


def dilate(latent: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, C, F, h, w]`` -> (``[B, C, F, h*s, w*s]`` with the values on every ``s``-th row/column and zeros
    elsewhere, ``[B, 1, F, h*s, w*s]`` 1 where a value is, 0 in the holes)."""
    b, c, f, h, w = latent.shape
    full = latent.new_zeros(b, c, f, h * factor, w * factor)
    full[..., ::factor, ::factor] = latent
    mask = latent.new_zeros(b, 1, f, h * factor, w * factor)
    mask[..., ::factor, ::factor] = 1.0
    return full, mask


def with_reference_guide(inputs: DenoiserInput) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The training forward's reference tokens as a ComfyUI guide: (video with the dilated reference frames
    appended, per-token timesteps over both, the model kwargs ``keyframe_idxs`` and ``denoise_mask``)."""
    video, ref = inputs.video, inputs.reference.to(inputs.video.dtype)
    b, _, f, h, w = video.shape
    factor = h // ref.shape[3]
    full, real = dilate(ref, factor)
    fr = ref.shape[2]
    present = real[:, 0].reshape(b, -1).bool()
    timesteps = inputs.video_timesteps.new_zeros(b, fr * h * w)
    timesteps[present] = inputs.reference_timesteps.to(timesteps).reshape(-1)
    positions = inputs.reference_positions.new_zeros(b, 3, fr * h * w, 2)
    positions.permute(0, 2, 1, 3)[present] = inputs.reference_positions.permute(0, 2, 1, 3).reshape(-1, 3, 2)
    # Negative entries drop the dilation holes; every other value is ignored by the model's forward.
    denoise_mask = torch.cat([torch.ones(b, 1, f, h, w), real.cpu() - 1.0], dim=2).to(video.device)
    return (torch.cat([video, full], dim=2), torch.cat([inputs.video_timesteps, timesteps], dim=1),
            {"keyframe_idxs": positions.to(video.device), "denoise_mask": denoise_mask})


def add_reference_guide(positive, negative, latent: dict, reference: torch.Tensor, factor: int,
                        strength: float = 1.0):
    """Sampling: appends the encoded ``reference`` (``[1, 128, F'r, H/s, W/s]``) to ``latent`` as ComfyUI's
    ``LTXVAddGuide`` does at frame 0, dilated by ``factor``. Returns (positive, negative, latent); undo with
    ``crop_reference_guide`` after sampling."""
    from comfy_extras import nodes_lt

    samples = latent["samples"]
    h, w = samples.shape[3:]
    if h % factor or w % factor or reference.shape[3] * factor != h or reference.shape[4] * factor != w:
        raise ValueError(f"the reference latent is {tuple(reference.shape[3:])} but the video latent is {h}x{w} "
                         f"and the LoRA's reference_downscale_factor is {factor}: encode the reference at "
                         f"{w * 32 // factor}x{h * 32 // factor} pixels")
    guide, guide_mask = reference.to(samples), None
    if factor > 1:
        guide, guide_mask = dilate(guide, factor)
    scale = (8, 32, 32)
    positive, negative, samples, noise_mask = nodes_lt.LTXVAddGuide.append_keyframe(
        positive, negative, 0, samples, nodes_lt.get_noise_mask(latent), guide, strength, scale,
        guide_mask=guide_mask, latent_downscale_factor=factor)
    return positive, negative, {"samples": samples, "noise_mask": noise_mask}


def crop_reference_guide(positive, negative, latent: dict):
    """Removes the guide frames from a sampled latent (ComfyUI's ``LTXVCropGuides``)."""
    from comfy_extras import nodes_lt

    return tuple(nodes_lt.LTXVCropGuides.execute(positive, negative, latent).result)
