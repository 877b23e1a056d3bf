"""Audio-video (ltx-trainer's ``flexible`` strategy with video and audio both generated, as in its ``t2v_lora``
config): the DiT learns the clip's picture and its sound together.

* Each modality draws its own sigma from the shifted logit-normal sampler *at its own token count*: video at
  ``F'*H'*W'`` tokens, audio at ``T`` (25 tokens a second), so audio trains at lower noise than video.
* Video: every token noised, latent frame 0 optionally given clean (per-sample draw, timestep 0, no loss). Audio:
  every one of its ``T`` tokens generated and scored; it has no conditioning of its own.
* Loss: per sample, each modality's squared error averaged over its scored tokens and channels (masked mean
  divided by the mask's mean), video + audio with equal weight, then the mean over the batch.
* The denoiser is given both sigmas, which drive the audio<->video cross-attention gates.

Clips without a sound track (``TrainItem.audio_latents is None``) either train video-only in the same run (their
batches carry no audio tokens, as in inference without sound) or are left out (``cfg.silent_clips``).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from .. import objective
from ..denoiser import DenoiserInput, DenoiserOutput
from ...cache.training_data import TrainingData, TrainItem
from .base import StepBatch, StepContext


@dataclasses.dataclass
class Draws:
    """Every random value of one audio-video step, drawn in this order from the run's generator."""

    dropped: torch.Tensor
    """``[B]`` bool: caption replaced by the empty caption."""
    video_sigma: torch.Tensor
    first_frame: torch.Tensor
    """``[B]`` bool: latent frame 0 given clean."""
    video_noise: torch.Tensor
    audio_sigma: torch.Tensor | None
    audio_noise: torch.Tensor | None


class AudioVideo:
    name = "audio_video"

    def check(self, data: TrainingData) -> None:
        if not any(data.group_key(i)[2] is not None for i in range(len(data))):
            raise ValueError("the audio-video strategy needs audio latents, and no sample has any: run Latent "
                             "Precompute with 'audio' on (and an audio VAE connected), on clips with a sound track")

    def draw(self, items: Sequence[TrainItem], ctx: StepContext) -> Draws:
        gen = ctx.generator
        x0_shape = (len(items), *items[0].video_latents.shape)
        b, frames = x0_shape[0], x0_shape[2]
        dropped = torch.rand(b, generator=gen) < ctx.cfg.caption_dropout
        video_sigma = ctx.sampler.sample(b, frames * x0_shape[3] * x0_shape[4], gen)
        first_frame = (torch.rand(b, generator=gen) < ctx.cfg.first_frame_conditioning) & (frames > 1)
        video_noise = torch.randn(x0_shape, generator=gen)
        audio_sigma = audio_noise = None
        if items[0].audio_latents is not None:
            a_shape = (b, *items[0].audio_latents.shape)
            audio_sigma = ctx.sampler.sample(b, a_shape[2], gen)
            audio_noise = torch.randn(a_shape, generator=gen)
        return Draws(dropped, video_sigma, first_frame, video_noise, audio_sigma, audio_noise)

    def prepare(self, items: Sequence[TrainItem], ctx: StepContext) -> StepBatch:
        silent = [it.audio_latents is None for it in items]
        if any(silent) and not all(silent):
            raise ValueError("a batch mixes clips with and without sound; batches group by shape, so this means "
                             "the data reports wrong shapes: re-run Latent Precompute")
        return self.build(items, self.draw(items, ctx), ctx)

    def build(self, items: Sequence[TrainItem], d: Draws, ctx: StepContext) -> StepBatch:
        """The step for given draws (deterministic; the parity test feeds the same draws to ltx-trainer's rules)."""
        dev = ctx.device
        x0 = _fp32_or_wider(torch.stack([it.video_latents for it in items]))
        context = _fp32_or_wider(torch.stack([it.context for it in items]))
        if d.dropped.any():
            context[d.dropped] = ctx.empty_context.to(context.dtype)
        generated = objective.first_frame_mask(x0, d.first_frame)
        token_sigma = d.video_sigma[:, None] * generated
        inputs = DenoiserInput(
            video=objective.noisy_input(x0, d.video_noise, token_sigma).to(dev), video_timesteps=token_sigma.to(dev),
            sigma=d.video_sigma.to(dev), context=context.to(dev), fps=items[0].fps)
        batch = StepBatch(inputs, d.video_sigma, objective.velocity_target(x0, d.video_noise), generated)
        if d.audio_sigma is not None:
            a0 = _fp32_or_wider(torch.stack([it.audio_latents for it in items]))
            b, t = a0.shape[0], a0.shape[2]
            a_token_sigma = d.audio_sigma[:, None].expand(b, t)
            inputs.audio = objective.noisy_input(a0, d.audio_noise, a_token_sigma).to(dev)
            inputs.audio_timesteps = a_token_sigma.to(dev)
            inputs.audio_sigma = d.audio_sigma.to(dev)
            batch.audio_target = objective.velocity_target(a0, d.audio_noise)
            batch.audio_loss_mask = torch.ones(b, t, dtype=torch.bool)
        return batch

    def loss(self, out: DenoiserOutput, batch: StepBatch) -> torch.Tensor:
        dev = out.video.device
        per_sample = objective.masked_mse_per_sample(out.video, batch.video_target.to(dev),
                                                     batch.video_loss_mask.to(dev))
        if batch.audio_target is not None:
            per_sample = per_sample + objective.masked_mse_per_sample(
                out.audio, batch.audio_target.to(dev), batch.audio_loss_mask.to(dev))
        return per_sample.mean()

    def metadata(self) -> dict[str, str]:
        return {"audio_trained": "true"}


SILENT_CLIP_CHOICES = {"train video-only": "video_only", "exclude": "exclude"}


def silent_clips_note(data: TrainingData, excluded: list[int], train_audio: bool) -> str:
    """The trainer report's line about clips without sound (``data`` is everything the run was given)."""
    if not train_audio:
        return ""
    silent = [i for i in range(len(data)) if data.group_key(i)[2] is None]
    if not silent:
        return ""
    names = ", ".join(data.item(i).sample_id for i in silent[:5]) + (" ..." if len(silent) > 5 else "")
    how = "left out" if excluded else "trained video-only"
    return f"\n{len(silent)} clip(s) without sound {how}: {names}"


def _fp32_or_wider(t: torch.Tensor) -> torch.Tensor:
    """Cached bf16 latents compute in fp32; float64 (the parity test) stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def select_data(cfg, data: TrainingData) -> tuple[TrainingData, list[int]]:
    """The samples an audio-video run trains on, and the indices of silent clips it leaves out."""
    if cfg.silent_clips != "exclude":
        return data, []
    from ...cache.training_data import Subset

    silent = [i for i in range(len(data)) if data.group_key(i)[2] is None]
    if len(silent) == len(data):
        raise ValueError("every clip is silent and 'silent_clips' is 'exclude': nothing left to train. Precompute "
                         "with audio on, on clips that have sound, or set silent_clips to 'train video-only'")
    return (Subset(data, [i for i in range(len(data)) if i not in set(silent)]) if silent else data), silent
