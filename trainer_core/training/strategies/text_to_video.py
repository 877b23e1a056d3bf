"""Text-to-video (ltx-trainer's ``text_to_video``): every video token is noised with one sigma per sample,
except latent frame 0 when first-frame conditioning is drawn; optional audio draws its own sigma from its own
token count (ltx-trainer's flexible strategy)."""

from __future__ import annotations

from typing import Sequence

import torch

from .. import objective
from ..denoiser import DenoiserInput, DenoiserOutput
from ...cache.training_data import TrainingData, TrainItem
from .base import StepBatch, StepContext, batch_context, masked_loss


class TextToVideo:
    name = "text_to_video"

    def check(self, data: TrainingData) -> None:
        pass

    def prepare(self, items: Sequence[TrainItem], ctx: StepContext) -> StepBatch:
        batch = noised_video(items, ctx)
        if ctx.cfg.train_audio:
            add_audio(items, ctx, batch)
        return batch

    def loss(self, out: DenoiserOutput, batch: StepBatch) -> torch.Tensor:
        return masked_loss(out, batch)

    def metadata(self) -> dict[str, str]:
        return {}


def noised_video(items: Sequence[TrainItem], ctx: StepContext) -> StepBatch:
    """The target video noised at a sampled sigma, with first-frame conditioning drawn per sample. The draw order
    (caption dropout, sigma, first frame, noise) is part of the resume contract: do not reorder."""
    gen, dev = ctx.generator, ctx.device
    x0 = torch.stack([it.video_latents for it in items]).float()
    b = x0.shape[0]
    context = batch_context(items, ctx)
    sigma = ctx.sampler.sample(b, objective.video_token_count(x0), gen)
    conditioned = (torch.rand(b, generator=gen) < ctx.cfg.first_frame_conditioning) & (x0.shape[2] > 1)
    generated = objective.first_frame_mask(x0, conditioned)
    token_sigma = sigma[:, None] * generated
    noise = torch.randn(x0.shape, generator=gen)
    inputs = DenoiserInput(
        video=objective.noisy_input(x0, noise, token_sigma).to(dev), video_timesteps=token_sigma.to(dev),
        sigma=sigma.to(dev), context=context.to(dev), fps=items[0].fps)
    return StepBatch(inputs, sigma, objective.velocity_target(x0, noise), generated)


def add_audio(items: Sequence[TrainItem], ctx: StepContext, batch: StepBatch) -> None:
    """Noised audio joins the step, generated in full, with its own sigma."""
    if any(it.audio_latents is None for it in items):
        missing = next(it.sample_id for it in items if it.audio_latents is None)
        raise ValueError(f"audio training is on but sample {missing} has no audio latents: precompute with "
                         "audio enabled, or turn train_audio off")
    gen, dev = ctx.generator, ctx.device
    a0 = torch.stack([it.audio_latents for it in items]).float()
    b, t = a0.shape[0], a0.shape[2]
    a_sigma = ctx.sampler.sample(b, t, gen)
    a_noise = torch.randn(a0.shape, generator=gen)
    a_token_sigma = a_sigma[:, None].expand(b, t)
    batch.inputs.audio = objective.noisy_input(a0, a_noise, a_token_sigma).to(dev)
    batch.inputs.audio_timesteps = a_token_sigma.to(dev)
    batch.inputs.audio_sigma = a_sigma.to(dev)
    batch.audio_target = objective.velocity_target(a0, a_noise)
    batch.audio_loss_mask = torch.ones(b, t, dtype=torch.bool)
