"""Tiny random-weight LTX-2 models and in-memory training data for the core tests."""

from __future__ import annotations

import torch

from trainer_core.training.diffusers_denoiser import DiffusersLTX2Denoiser, build_ltx2_transformer
from trainer_core.cache.training_data import InMemoryData, TrainItem


def tiny_denoiser(version: str = "ltx-2.3", seed: int = 0, dtype=torch.float32) -> DiffusersLTX2Denoiser:
    return DiffusersLTX2Denoiser(build_ltx2_transformer(version, "tiny", seed=seed, dtype=dtype), version)


def tiny_data(denoiser, n: int = 3, latent=(2, 2, 3), context_len: int = 8, seed: int = 0,
              audio_steps: int | None = None, fps: float = 24.0) -> InMemoryData:
    gen = torch.Generator().manual_seed(seed)
    width = sum(denoiser.context_widths())
    items = [
        TrainItem(
            sample_id=f"clip{i}.mp4", fps=fps,
            video_latents=torch.randn(128, *latent, generator=gen),
            context=torch.randn(context_len, width, generator=gen),
            audio_latents=None if audio_steps is None else torch.randn(8, audio_steps, 16, generator=gen))
        for i in range(n)
    ]
    return InMemoryData(items, empty=torch.zeros(context_len, width), name=f"tiny-{seed}")
