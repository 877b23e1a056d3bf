"""``Denoiser`` over diffusers' ``LTX2VideoTransformer3DModel``: the headless and test backend.

diffusers' LTX-2 block names are ComfyUI's (``transformer_blocks.N.attn1.to_q``), so a LoRA trained here is
saved under the same keys as one trained through ComfyUI's model.
"""

from __future__ import annotations

import torch
from torch import nn

from .denoiser import DenoiserInput, DenoiserOutput
from .positions import video_positions

# Per-version architecture flags and the full-size dimensions (see shared notes, "2.0 vs 2.3").
_FLAGS = {
    "ltx-2.3": dict(gated_attn=True, audio_gated_attn=True, cross_attn_mod=True, audio_cross_attn_mod=True,
                    use_prompt_embeddings=False),
    "ltx-2.0": dict(gated_attn=False, audio_gated_attn=False, cross_attn_mod=False, audio_cross_attn_mod=False,
                    use_prompt_embeddings=True),
}
_FULL = dict(num_layers=48, num_attention_heads=32, attention_head_dim=128, cross_attention_dim=4096,
             audio_num_attention_heads=32, audio_attention_head_dim=64, audio_cross_attention_dim=2048,
             caption_channels=3840)
# The tiny shape every test and the demo use; ComfyUI's tiny test checkpoints have the same dimensions, so LoRAs
# trained on one load on the other.
_TINY = dict(num_layers=2, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
             audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8,
             caption_channels=32)
# Wide enough to learn a concept on CPU in seconds (the 16-wide tiny model cannot: its random base is worse than
# predicting zero, so any LoRA lowers every loss). Used by the learning test bed and the demo.
_LEARNABLE = dict(_TINY, num_attention_heads=4, attention_head_dim=16, cross_attention_dim=64)


def ltx2_config(version: str = "ltx-2.3", size: str = "tiny") -> dict:
    """Constructor kwargs for ``LTX2VideoTransformer3DModel`` of a given LTX version and size ("tiny", "learnable"
    or "full")."""
    if version not in _FLAGS:
        raise ValueError(f"unknown LTX version {version!r}; expected one of {sorted(_FLAGS)}")
    dims = {"tiny": _TINY, "learnable": _LEARNABLE, "full": _FULL}[size]
    return dict(in_channels=128, out_channels=128, audio_in_channels=128, audio_out_channels=128,
                rope_type="split", **dims, **_FLAGS[version])


def build_ltx2_transformer(version: str = "ltx-2.3", size: str = "tiny", seed: int = 0,
                           device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A random-weight LTX-2 DiT. Weights are redrawn N(0, 1/fan_in) so no layer starts as an exact zero
    (diffusers zero-initialises some projections, which would hide bugs that only show with real weights)."""
    from diffusers import LTX2VideoTransformer3DModel

    gen = torch.Generator().manual_seed(seed)
    model = LTX2VideoTransformer3DModel(**ltx2_config(version, size))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    # nn.Module.to, not diffusers' override, which warns about fp32-pinned modules this model does not have.
    return nn.Module.to(model, device=device, dtype=dtype)


class DiffusersLTX2Denoiser:
    def __init__(self, transformer: nn.Module, base_model_version: str = "ltx-2.3"):
        self.transformer = transformer
        self.base_model_version = base_model_version
        cfg = transformer.config
        self._ltx23 = bool(cfg.cross_attn_mod)
        if cfg.use_prompt_embeddings:
            self._widths = (cfg.caption_channels, cfg.caption_channels)
        else:
            self._widths = (cfg.num_attention_heads * cfg.attention_head_dim,
                            cfg.audio_num_attention_heads * cfg.audio_attention_head_dim)
        self._scale = float(cfg.timestep_scale_multiplier)
        transformer.requires_grad_(False)

    def context_widths(self) -> tuple[int, int]:
        return self._widths

    def lora_targets(self) -> dict[str, nn.Linear]:
        return {name: m for name, m in self.transformer.named_modules()
                if isinstance(m, nn.Linear) and name.startswith("transformer_blocks.")}

    def base_parameters(self) -> list[nn.Parameter]:
        return list(self.transformer.parameters())

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    def __call__(self, inputs: DenoiserInput) -> DenoiserOutput:
        video = inputs.video
        b, c, f, h, w = video.shape
        tokens = video.permute(0, 2, 3, 4, 1).reshape(b, f * h * w, c)
        n_target = tokens.shape[1]
        timesteps, coords = inputs.video_timesteps, None
        if inputs.reference is not None:
            # Reference tokens follow the target (ComfyUI's guide order); attention is order-free given positions.
            ref = inputs.reference.to(tokens.dtype)
            tokens = torch.cat([tokens, ref.permute(0, 2, 3, 4, 1).reshape(b, -1, c)], dim=1)
            timesteps = torch.cat([timesteps, inputs.reference_timesteps.to(timesteps)], dim=1)
            coords = torch.cat([video_positions(f, h, w, b).to(tokens.device),
                                inputs.reference_positions.to(tokens.device, torch.float32)], dim=2)
            coords[:, 0] = coords[:, 0] / float(inputs.fps)
        dv, _ = self._widths
        context = inputs.context.to(tokens.dtype)
        video_ctx, audio_ctx = context[..., :dv], context[..., dv:]

        has_audio = inputs.audio is not None
        if has_audio:
            ab, ac, at, af = inputs.audio.shape
            audio_tokens = inputs.audio.permute(0, 2, 1, 3).reshape(ab, at, ac * af)
            audio_t = inputs.audio_timesteps
            audio_sigma = inputs.audio_sigma if inputs.audio_sigma is not None else inputs.sigma
        else:
            # diffusers cannot run an empty audio stream; one inert token with cross-modal attention switched off
            # leaves the video output independent of it, which is what ComfyUI does for video-only latents.
            at = 1
            audio_tokens = tokens.new_zeros(b, 1, 128)
            audio_t = tokens.new_zeros(b, 1)
            audio_sigma = inputs.sigma

        v_out, a_out = self.transformer(
            hidden_states=tokens,
            audio_hidden_states=audio_tokens,
            encoder_hidden_states=video_ctx,
            audio_encoder_hidden_states=audio_ctx,
            timestep=timesteps.to(tokens.dtype) * self._scale,
            audio_timestep=audio_t.to(tokens.dtype) * self._scale,
            sigma=inputs.sigma.to(tokens.dtype) * self._scale,
            audio_sigma=audio_sigma.to(tokens.dtype) * self._scale,
            num_frames=f, height=h, width=w, fps=float(inputs.fps), audio_num_frames=at, video_coords=coords,
            isolate_modalities=not has_audio,
            use_cross_timestep=self._ltx23,
            return_dict=False,
        )
        out_video = v_out[:, :n_target].reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3)
        out_audio = None
        if has_audio:
            out_audio = a_out.reshape(ab, at, ac, af).permute(0, 2, 1, 3)
        return DenoiserOutput(video=out_video, audio=out_audio)
