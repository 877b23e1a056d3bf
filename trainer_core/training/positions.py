"""RoPE positions of video tokens, as LTX-2 computes them (ltx-core's patch grid bounds mapped to pixel space).

A position is a ``[start, end)`` pair per axis (frame, y, x) in *pixel* units on the target video's grid; time is
in frames, not seconds (ComfyUI divides by the frame rate inside the model; diffusers wants seconds). The first
latent frame holds one pixel frame (causal VAE), so time bounds are shifted by ``1 - 8`` and clamped at 0.
"""

from __future__ import annotations

import torch

VAE_SCALE = (8, 32, 32)
"""Pixels per latent step along (frame, y, x)."""


def video_positions(frames: int, height: int, width: int, batch: int = 1,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[B, 3, F*H*W, 2]`` pixel bounds of a ``F x H x W`` latent grid, tokens in (frame, y, x) raster order."""
    grid = torch.stack(torch.meshgrid(torch.arange(frames, dtype=dtype), torch.arange(height, dtype=dtype),
                                      torch.arange(width, dtype=dtype), indexing="ij")).reshape(3, -1)
    scale = torch.tensor(VAE_SCALE, dtype=dtype)[:, None, None]
    bounds = torch.stack([grid, grid + 1], dim=-1) * scale
    bounds[0] = (bounds[0] + 1 - VAE_SCALE[0]).clamp(min=0)
    return bounds.unsqueeze(0).expand(batch, -1, -1, -1).clone()


def reference_positions(frames: int, height: int, width: int, spatial: int, temporal: int, batch: int = 1,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Positions of a reference latent that was made ``spatial`` times smaller and keeps every ``temporal``-th
    frame: its grid is stretched onto the target's so reference and target pixels that coincide share a position.
    In time, a reference frame spans ``temporal`` target frames and the last frames line up (ltx-trainer's rule);
    the first is clamped at 0."""
    pos = video_positions(frames, height, width, batch, dtype)
    if temporal != 1:
        pos[:, 0] = (pos[:, 0] * temporal - (temporal - 1)).clamp(min=0)
    pos[:, 1:] *= spatial
    return pos


def scale_factors(target_shape, reference_shape) -> tuple[int, int]:
    """(spatial, temporal) factors between a target ``[.., F, H, W]`` latent and its reference, inferred from their
    sizes as ltx-trainer does. Raises ``ValueError`` naming the sizes when they are not whole multiples."""
    (f, h, w), (fr, hr, wr) = tuple(target_shape[-3:]), tuple(reference_shape[-3:])
    if h % hr or w % wr or h // hr != w // wr:
        raise ValueError(f"the reference latent is {hr}x{wr} and the target {h}x{w}: the reference must be the "
                         "target downscaled by one whole factor on both sides. Re-run Latent Precompute with a "
                         "reference downscale factor that divides the bucket")
    temporal = 1
    if fr != f:
        if fr < 2 or (f - 1) % (fr - 1):
            raise ValueError(f"the reference has {fr} latent frames and the target {f}: a temporally subsampled "
                             "reference must keep frame 0 and every N-th frame of the target's window")
        temporal = (f - 1) // (fr - 1)
    return h // hr, temporal
