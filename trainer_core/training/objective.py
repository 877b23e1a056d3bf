"""ltx-trainer's training objective, reimplemented from its description (shared notes, "Objective").

Rectified flow: ``x_t = (1 - s) x0 + s eps`` with a per-token ``s`` (0 on clean conditioning tokens), the model
predicts the velocity ``eps - x0``, and the loss is a plain MSE over the generated tokens only. Sigma follows
the shifted logit-normal sampler whose shift grows with the generated token count, so long clips train at
higher noise, exactly as the official trainer does.
"""

from __future__ import annotations

import dataclasses
import math

import torch

# Shift mu is linear in the generated token count through these two points (not clamped: ltx-trainer
# extrapolates both ways).
MU_AT_1024, MU_AT_4096 = 0.95, 2.05
# z-scores of the 0.5th and 99.9th percentiles of N(0, 1); the sampler stretches that range onto [0, 1].
Z_LOW, Z_HIGH = -2.5758293035489004, 3.090232306167813


@dataclasses.dataclass(frozen=True)
class SigmaSampler:
    std: float = 1.0
    eps: float = 1e-3
    uniform_prob: float = 0.1

    @staticmethod
    def mu(num_tokens: int) -> float:
        return MU_AT_1024 + (MU_AT_4096 - MU_AT_1024) * (num_tokens - 1024) / (4096 - 1024)

    def bounds(self, num_tokens: int) -> tuple[float, float]:
        mu = self.mu(num_tokens)
        return _sigmoid(mu + Z_LOW * self.std), _sigmoid(mu + Z_HIGH * self.std)

    def transform(self, normal: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """Map standard-normal draws to sigma (the non-uniform branch); used by the sampler and the tests."""
        lo, hi = self.bounds(num_tokens)
        s = torch.sigmoid(self.mu(num_tokens) + self.std * normal)
        t = (s - lo) / (hi - lo)
        t = torch.where(t < self.eps, 2 * self.eps - t, t)
        return t.clamp(0.0, 1.0)

    def sample(self, batch: int, num_tokens: int, generator: torch.Generator) -> torch.Tensor:
        t = self.transform(torch.randn(batch, generator=generator, dtype=torch.float64), num_tokens)
        uniform = self.eps + (1 - self.eps) * torch.rand(batch, generator=generator, dtype=torch.float64)
        pick_uniform = torch.rand(batch, generator=generator, dtype=torch.float64) < self.uniform_prob
        return torch.where(pick_uniform, uniform, t).float()


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def video_token_count(latents: torch.Tensor) -> int:
    """Generated video tokens of a ``[B, C, F', H', W']`` latent (patch size 1: one token per latent voxel)."""
    return int(latents.shape[2] * latents.shape[3] * latents.shape[4])


def first_frame_mask(latents: torch.Tensor, conditioned: torch.Tensor) -> torch.Tensor:
    """``[B, F'*H'*W']`` True on tokens that are generated (noised and scored); False on latent frame 0 of the
    samples in ``conditioned`` (``[B]`` bool), which stay clean at timestep 0."""
    b, _, f, h, w = latents.shape
    generated = torch.ones(b, f, h * w, dtype=torch.bool, device=latents.device)
    generated[:, 0] &= ~conditioned.to(latents.device)[:, None]
    return generated.reshape(b, f * h * w)


def noisy_input(x0: torch.Tensor, noise: torch.Tensor, token_sigma: torch.Tensor) -> torch.Tensor:
    """``(1 - s) x0 + s eps`` with a per-token ``s`` of shape ``[B, N]`` broadcast over channels."""
    s = _tokens_to_grid(token_sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def masked_mse(pred: torch.Tensor, target: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over tokens and channels under the generated-token mask, divided by the mask's
    mean: ltx-trainer's normalisation, so the loss scale does not depend on how many tokens were conditioning."""
    err = (pred.float() - target.float()) ** 2
    mask = _tokens_to_grid(generated.float(), err)
    return (err * mask).mean() / mask.mean().clamp_min(1e-12)


def masked_mse_per_sample(pred: torch.Tensor, target: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """``[B]``: ``masked_mse`` normalised per sample, as ltx-trainer's flexible strategy scores each sample before
    the batch mean (differs from ``masked_mse`` only when samples of a batch score different token counts)."""
    dt = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    err = (pred.to(dt) - target.to(dt)) ** 2
    mask = _tokens_to_grid(generated.float(), err).expand_as(err)
    dims = tuple(range(1, err.ndim))
    return (err * mask).mean(dims) / mask.mean(dims).clamp_min(1e-8)


def _tokens_to_grid(per_token: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` per-token values laid out as ``[B, 1, *grid]`` to broadcast against a ``[B, C, *grid]`` tensor.
    Video grids are ``F', H', W'``; audio latents ``[B, 8, T, 16]`` carry one token per time step T."""
    b = like.shape[0]
    if like.ndim == 5:
        return per_token.reshape(b, 1, *like.shape[2:]).to(like.dtype)
    return per_token.reshape(b, 1, like.shape[2], 1).to(like.dtype)
