"""Training strategies: what one training step feeds the denoiser and where its loss counts.

ltx-trainer's split of concerns: the loop (``trainer.py``) draws batches, runs the denoiser, steps the optimizer
and checkpoints; a strategy decides everything about the step's *content*:

* ``prepare``: which tokens are noised and with which sigma, which condition clean at timestep 0 (first frame,
  reference tokens), extra tokens and their RoPE positions; all randomness from ``StepContext.generator`` so a
  resumed run replays the same draws.
* ``loss``: where the loss counts (``StepBatch`` carries the targets and token masks; ``masked_loss`` is the
  shared rule).
* ``metadata``: what the saved LoRA records so inference applies it the way it was trained.
* ``check``: refuse data this strategy cannot train on, with a message naming the fix.

To add a strategy (e.g. ``audio_video.py``): write a class with these four methods and a ``name``, reuse
``batch_context`` and the helpers in ``objective``, and register it in ``strategies/__init__.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import torch

from .. import objective
from ..config import TrainConfig
from ..denoiser import DenoiserInput, DenoiserOutput
from ...cache.training_data import TrainingData, TrainItem


@dataclasses.dataclass
class StepContext:
    """What the loop lends a strategy for one step."""

    cfg: TrainConfig
    generator: torch.Generator
    """The run's single CPU generator: every random draw of a step comes from it, in a fixed order."""
    sampler: objective.SigmaSampler
    empty_context: torch.Tensor
    device: torch.device


@dataclasses.dataclass
class StepBatch:
    """One prepared step: the denoiser's input and what its prediction is scored against."""

    inputs: DenoiserInput
    sigma: torch.Tensor
    """``[B]`` the sampled sigma (reported as the step's sigma)."""
    video_target: torch.Tensor
    """``[B, C, F', H', W']`` velocity target of the generated video (never of reference tokens)."""
    video_loss_mask: torch.Tensor
    """``[B, F'*H'*W']`` True where the video loss counts."""
    audio_target: torch.Tensor | None = None
    audio_loss_mask: torch.Tensor | None = None


class TrainingStrategy(Protocol):
    name: str

    def check(self, data: TrainingData) -> None: ...

    def prepare(self, items: Sequence[TrainItem], ctx: StepContext) -> StepBatch: ...

    def loss(self, out: DenoiserOutput, batch: StepBatch) -> torch.Tensor: ...

    def metadata(self) -> dict[str, str]: ...


def batch_context(items: Sequence[TrainItem], ctx: StepContext) -> torch.Tensor:
    """``[B, L, D]`` text context with caption dropout applied (one draw per sample)."""
    context = torch.stack([it.context for it in items]).float()
    drop = torch.rand(len(items), generator=ctx.generator) < ctx.cfg.caption_dropout
    if drop.any():
        context[drop] = ctx.empty_context.float()
    return context


def masked_loss(out: DenoiserOutput, batch: StepBatch) -> torch.Tensor:
    """Video loss plus audio loss with equal weight, each a masked MSE normalised by its mask's mean."""
    dev = out.video.device
    loss = objective.masked_mse(out.video, batch.video_target.to(dev), batch.video_loss_mask.to(dev))
    if batch.audio_target is not None:
        loss = loss + objective.masked_mse(out.audio, batch.audio_target.to(dev), batch.audio_loss_mask.to(dev))
    return loss
