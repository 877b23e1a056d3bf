"""The denoiser being trained, as the training loop sees it.

Implementations wrap a concrete LTX-2 DiT (diffusers' ``LTX2VideoTransformer3DModel`` here; ComfyUI's
``LTXAVModel`` in the node layer) and answer one question: given noisy latents, per-token timesteps, sigma and
processed text context, what velocity does the model predict? They also name the ``nn.Linear`` modules LoRA may
target, by the module path that ComfyUI, ltx-core and diffusers share (``transformer_blocks.N.attn1.to_q``).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch
from torch import nn


@dataclasses.dataclass
class DenoiserInput:
    video: torch.Tensor
    """``[B, 128, F', H', W']`` noisy video latents."""
    video_timesteps: torch.Tensor
    """``[B, F'*H'*W']`` per-token sigma in [0, 1]; 0 on clean conditioning tokens."""
    sigma: torch.Tensor
    """``[B]`` the sample's sigma (drives LTX-2.3's prompt AdaLN)."""
    context: torch.Tensor
    """``[B, L, D_video + D_audio]`` processed text context."""
    fps: float
    audio: torch.Tensor | None = None
    """``[B, 8, T, 16]`` noisy audio latents, or None for a video-only run."""
    audio_timesteps: torch.Tensor | None = None
    """``[B, T]`` per-token audio sigma."""
    audio_sigma: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    """``[B, 128, F'r, H'r, W'r]`` extra video tokens (IC-LoRA reference): attended to alongside ``video`` in
    self-attention but not predicted; ``DenoiserOutput.video`` covers ``video`` only."""
    reference_positions: torch.Tensor | None = None
    """``[B, 3, F'r*H'r*W'r, 2]`` their RoPE positions on the target's pixel grid (``positions.py``)."""
    reference_timesteps: torch.Tensor | None = None
    """``[B, F'r*H'r*W'r]`` their per-token sigma (0: clean conditioning)."""


@dataclasses.dataclass
class DenoiserOutput:
    video: torch.Tensor
    """``[B, 128, F', H', W']`` predicted velocity (noise - clean)."""
    audio: torch.Tensor | None = None
    """``[B, 8, T, 16]`` predicted audio velocity when audio was given."""


class Denoiser(Protocol):
    base_model_version: str
    """"ltx-2.3" or "ltx-2.0": written into the LoRA so it is never applied to the wrong base."""

    def __call__(self, inputs: DenoiserInput) -> DenoiserOutput: ...

    def lora_targets(self) -> dict[str, nn.Linear]:
        """Every ``nn.Linear`` LoRA may adapt, keyed by its ComfyUI module path (without ``diffusion_model.``)."""
        ...

    def base_parameters(self) -> list[nn.Parameter]:
        """The frozen base weights (training must leave them bit-identical)."""
        ...

    def set_gradient_checkpointing(self, enabled: bool) -> None: ...

    def context_widths(self) -> tuple[int, int]:
        """Widths of the video and audio halves of the processed context."""
        ...
