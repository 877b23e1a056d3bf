"""What Latent Precompute encodes with: small protocols plus the implementations that need no ComfyUI.

The ComfyUI adapters (``nodes/latent_precompute.py``) and the implementations here satisfy the same protocols,
so ``trainer_core.cache.precompute`` runs unchanged in ComfyUI, headless and in CI. Every encoder carries an
``identity`` string: it goes into the cache keys, so a different checkpoint or text encoder never reuses latents
made by another one.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import nn

LATENT_CHANNELS = 128
SPATIAL_FACTOR = 32
TEMPORAL_FACTOR = 8


@runtime_checkable
class VideoEncoder(Protocol):
    identity: str

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, F, H, W, 3]`` in 0..1 (F = 8n+1, H and W multiples of 32) -> normalised latent means
        ``[B, 128, n+1, H/32, W/32]``."""
        ...


@runtime_checkable
class VideoDecoder(Protocol):
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, 128, F', H', W']`` normalised latents -> ``[B, F, H, W, 3]`` in 0..1 (the decode check)."""
        ...


@runtime_checkable
class TextConditioner(Protocol):
    identity: str

    def encode(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """One *processed* context ``[L, D_video + D_audio]`` per text: what the DiT's cross-attention takes."""
        ...


@runtime_checkable
class AudioEncoder(Protocol):
    identity: str

    def encode(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``[C, S]`` float waveform -> audio latents ``[8, T, 16]``."""
        ...


def check_bucket(width: int, height: int, frames: int, what: str) -> None:
    """Raises a ValueError that says how to fix a size the LTX VAE cannot encode exactly."""
    if (frames - 1) % TEMPORAL_FACTOR or height % SPATIAL_FACTOR or width % SPATIAL_FACTOR or frames < 1:
        raise ValueError(
            f"{what}: {width}x{height}x{frames} is not an LTX bucket; width and height must be multiples of "
            f"{SPATIAL_FACTOR} and frames 8n+1 (1, 9, 17, ..., 49, ...). Re-run the Frame Trimmer with a valid bucket.")


def check_frames(frames: torch.Tensor, what: str = "frames") -> None:
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"{what}: expected [B, F, H, W, 3] RGB frames, got shape {tuple(frames.shape)}")
    _, f, h, w, _ = frames.shape
    check_bucket(w, h, f, what)


def module_identity(module: nn.Module, extra: object = None) -> str:
    """A cheap fingerprint of a module's weights: names, shapes, dtypes and the first values of each tensor.

    Hashing every byte of a 12 B text encoder would take longer than encoding a small dataset; the head of each
    tensor already differs between checkpoints, fine-tunes and random initialisations.
    """
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for name, tensor in module.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        try:
            head = tensor.detach().reshape(-1)[:64].to("cpu", torch.float32)
        except (RuntimeError, TypeError, NotImplementedError):
            # Quantized or meta tensors cannot always be sliced or cast; shape and dtype still identify them.
            continue
        h.update(head.numpy().tobytes())
    return h.hexdigest()[:24]


def tiny_vae_config() -> dict:
    """The diffusers ``AutoencoderKLLTX2Video`` config CI uses: a few MB, same 8x32x32 compression as LTX-2.3.

    diffusers derives the compression ratios from ``spatio_temporal_scaling`` alone (64x16 here) although the
    down-block types give 32x8; its tiling code reads the ratios, so they are set explicitly.
    """
    return dict(latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16, 16, 16), layers_per_block=(1,) * 5,
                decoder_block_out_channels=(8, 16, 32), decoder_layers_per_block=(1,) * 4,
                spatial_compression_ratio=SPATIAL_FACTOR, temporal_compression_ratio=TEMPORAL_FACTOR)


def build_tiny_vae(seed: int = 0):
    """A deterministic tiny ``AutoencoderKLLTX2Video`` with non-trivial latent statistics (so normalisation is
    exercised)."""
    from diffusers import AutoencoderKLLTX2Video

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLLTX2Video(**tiny_vae_config())
        vae.latents_mean.copy_(torch.randn(LATENT_CHANNELS) * 0.1)
        vae.latents_std.copy_(torch.rand(LATENT_CHANNELS) + 0.5)
    return vae.eval().requires_grad_(False)


class DiffusersVideoEncoder:
    """``VideoEncoder`` + ``VideoDecoder`` over diffusers' ``AutoencoderKLLTX2Video``.

    Latents are the posterior means normalised with the VAE's ``latents_mean``/``latents_std``: what LTX's own
    encoder returns and what ComfyUI's ``vae.encode`` gives for LTX models.

    ``tiling``: "never", "always", or "auto" (encode whole and retry tiled when the device runs out of memory, as
    ComfyUI's ``vae.encode`` does).
    """

    def __init__(self, vae, *, tiling: str = "auto", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, identity: str | None = None):
        if tiling not in ("never", "always", "auto"):
            raise ValueError(f"tiling must be 'never', 'always' or 'auto', got {tiling!r}")
        self.vae = vae
        self.tiling = tiling
        self.device = torch.device(device) if device is not None else next(vae.parameters()).device
        self.dtype = dtype or next(vae.parameters()).dtype
        # Private config keys (diffusers' "_use_default_values") are lists in set order, which changes per process.
        config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
        self.identity = identity or "diffusers-ltx2-vae:" + module_identity(vae, config)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        check_frames(frames)
        x = frames.to(self.device, self.dtype).permute(0, 4, 1, 2, 3).mul(2).sub(1)
        if self.tiling == "always":
            return self._normalise(self._encode_tiled(x))
        try:
            means = self.vae.encode(x).latent_dist.mean
        except torch.OutOfMemoryError:
            if self.tiling == "never":
                raise
            means = None
        if means is None:
            # Retried outside the except block so the failed attempt's activations can be freed first.
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            means = self._encode_tiled(x)
        return self._normalise(means)

    def _encode_tiled(self, x: torch.Tensor) -> torch.Tensor:
        self.vae.enable_tiling()
        try:
            return self.vae.encode(x).latent_dist.mean
        finally:
            self.vae.disable_tiling()

    def _normalise(self, means: torch.Tensor) -> torch.Tensor:
        mean = self.vae.latents_mean.view(1, -1, 1, 1, 1).to(means)
        std = self.vae.latents_std.view(1, -1, 1, 1, 1).to(means)
        return ((means - mean) * self.vae.config.scaling_factor / std).float().cpu()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.device, self.dtype)
        mean = self.vae.latents_mean.view(1, -1, 1, 1, 1).to(z)
        std = self.vae.latents_std.view(1, -1, 1, 1, 1).to(z)
        z = z * std / self.vae.config.scaling_factor + mean
        temb = None
        if self.vae.config.timestep_conditioning:
            # LTX decodes with a small decode timestep; 0.05 is the value its pipelines use.
            temb = torch.full((z.shape[0],), 0.05, device=z.device, dtype=z.dtype)
        video = self.vae.decode(z, temb).sample
        return video.add(1).div(2).clamp(0, 1).permute(0, 2, 3, 4, 1).float().cpu()


class StandInTextConditioner:
    """A deterministic stand-in for Gemma + the text connectors, for CI and the headless demo.

    Each word maps to a fixed pseudo-random vector (seeded by its hash); the remaining rows up to ``length`` are
    fixed "register" rows, as LTX's connectors pad every caption to a constant length with learnable registers.
    Equal captions give equal contexts and different captions different ones, which is all caching and training
    plumbing need. ``width`` is D_video + D_audio of the DiT the context is for (24 for the tiny test DiT).
    """

    def __init__(self, width: int = 24, length: int = 32, seed: int = 0, grow: bool = False):
        self.width = width
        self.length = length
        self.seed = seed
        self.grow = grow
        """Like ComfyUI's Gemma: a text of more than ``length`` tokens gives a longer context instead of a cut one."""
        self.identity = f"stand-in-text:w{width}:l{length}:s{seed}" + (":grow" if grow else "")
        self.calls = 0
        self._registers = self._vector(f"<register>:{seed}", (length, width))

    def _vector(self, key: str, shape: tuple[int, ...]) -> torch.Tensor:
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        return torch.randn(shape, generator=generator)

    def encode(self, texts: Sequence[str]) -> list[torch.Tensor]:
        self.calls += 1
        out = []
        for text in texts:
            words = re.findall(r"\w+|[^\w\s]", text.lower())
            extra = len(words) - self.length if self.grow else 0
            context = torch.cat([self._registers, self._registers[-1:].expand(max(0, extra), -1)])
            for i, word in enumerate(words[: self.length + max(0, extra)]):
                context[i] = self._vector(word, (self.width,))
            out.append(context)
        return out
