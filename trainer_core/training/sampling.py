"""Sampling without ComfyUI, for the headless sweep of the demo and the tests: Euler steps of the rectified flow on
any ``Denoiser``, with a LoRA applied at a chosen strength through forward hooks (ComfyUI's LoRA patching does the
same arithmetic: ``strength * B_scaled @ A`` added to the weight).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .denoiser import DenoiserInput


@contextmanager
def lora_applied(targets: dict, weights: dict[str, tuple[torch.Tensor, torch.Tensor]], strength: float):
    """``weights`` (``{module: (A, B_scaled)}``) added to the ``targets`` modules at ``strength`` while the block
    runs. Modules a LoRA has no weights for are left alone."""
    handles = []

    def hook(A, B):
        def apply(module, args, output):
            return output + strength * F.linear(F.linear(args[0].to(A.dtype), A), B).to(output.dtype)
        return apply

    try:
        if strength != 0:
            for name, (A, B) in weights.items():
                if name in targets:
                    handles.append(targets[name].register_forward_hook(hook(A.float(), B.float())))
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def euler_sample(denoiser, noise: torch.Tensor, context: torch.Tensor, sigmas: torch.Tensor, fps: float,
                 negative: torch.Tensor | None = None, cfg: float = 1.0) -> torch.Tensor:
    """Final latents ``[B, 128, F', H', W']`` from ``noise`` (the latent at sigma 1) down ``sigmas`` to 0, with
    classifier-free guidance when ``cfg != 1`` and a negative context is given."""
    x = noise.float() * float(sigmas[0])
    b = x.shape[0]
    tokens = x.shape[2] * x.shape[3] * x.shape[4]
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        sigma = torch.full((b,), s)

        def velocity(ctx):
            return denoiser(DenoiserInput(video=x, video_timesteps=sigma[:, None].expand(b, tokens), sigma=sigma,
                                          context=ctx.float().expand(b, *ctx.shape[-2:]), fps=fps)).video.float()
        v = velocity(context)
        if cfg != 1.0 and negative is not None:
            v = velocity(negative) + cfg * (v - velocity(negative))
        x = x + (s_next - s) * v
    return x


def sweep_latents(denoiser, plan, context_of, weights, latent_shape: tuple[int, int, int], sigmas: torch.Tensor,
                  fps: float) -> dict[tuple[int, float], torch.Tensor]:
    """Final latents of every (row, strength) cell of a ``SweepPlan``, as ``sweep_scores.score_sweep`` takes them:
    each row's seed gives its noise (the same at every strength), ``context_of(text)`` its ``[L, D]`` context, and
    all rows of one strength run as one batch (CFG 1, the distilled way)."""
    rows = plan.rows
    noise = torch.cat([torch.randn((1, 128, *latent_shape), generator=torch.Generator().manual_seed(r.seed))
                       for r in rows])
    context = torch.stack([context_of(r.prompt).float() for r in rows])
    targets = denoiser.lora_targets()
    out = {}
    for strength in plan.strengths:
        with lora_applied(targets, weights, strength):
            final = euler_sample(denoiser, noise, context, sigmas, fps)
        out.update({(i, strength): final[i:i + 1] for i in range(len(rows))})
    return out
