"""The Validation Sweep's sound: audio-video latents for ComfyUI's sampler, the LoRA applied with one strength per
modality, the audio latents kept for scoring and decoded through the LTX audio VAE.

Sampling is what a user's LTX-2.3 audio-video graph does (``LTXVEmptyLatentAudio`` + ``LTXVConcatAVLatent`` ->
sampler -> ``LTXVSeparateAVLatent`` -> ``LTXVAudioVAEDecode``): a ``NestedTensor`` of (video, audio) latents with
the audio length the audio VAE derives from frames and fps.
"""

from __future__ import annotations

import dataclasses

import torch

from ..trainer_core.output.lora_card import is_audio_module
from ..trainer_core.output.lora_file import LoraFile
from ..trainer_core.output.sweep_audio import strength_pair
from .lora import apply_lora


def apply_lora_per_modality(model, lora: LoraFile, video_strength: float, audio_strength: float, name: str,
                            allow_partial: bool = False):
    """``apply_lora`` with the video half (video attention and feed-forward) at ``video_strength`` and the audio
    half (audio attention and feed-forward, both audio<->video attentions) at ``audio_strength``."""
    halves = {True: {}, False: {}}
    for module, weights in lora.weights.items():
        halves[is_audio_module(module)][module] = weights
    patched = model
    for audio, strength in ((False, video_strength), (True, audio_strength)):
        if halves[audio]:
            part = dataclasses.replace(lora, weights=halves[audio])
            patched = apply_lora(patched, part, strength, name, allow_partial=allow_partial)
    return patched


class SweepSound:
    """Everything the sweep does differently when an audio VAE is connected."""

    def __init__(self, model, audio_vae, frames: int, fps: float, audio_strength: float):
        if not getattr(model.model.diffusion_model, "audio_patchify_proj", None):
            raise ValueError("an audio VAE is connected but this MODEL has no audio stream (LTX-Video 0.9?): "
                             "disconnect audio_vae")
        self.vae = audio_vae
        self.audio_strength = audio_strength
        first = audio_vae.first_stage_model
        self.steps = first.num_of_latents_from_frames(frames, round(fps))
        self.shape = (1, audio_vae.latent_channels, self.steps, first.latent_frequency_bins)
        self.sample_rate = int(first.output_sample_rate)
        self.latents: dict = {}

    def latent(self, video_latent: torch.Tensor):
        import comfy.nested_tensor

        return comfy.nested_tensor.NestedTensor((video_latent, torch.zeros(self.shape)))

    def patch(self, model, lora: LoraFile, strength: float, name: str, allow_partial: bool):
        video_s, audio_s = strength_pair(strength, self.audio_strength)
        return apply_lora_per_modality(model, lora, video_s, audio_s, name, allow_partial)

    def keep(self, key, out) -> torch.Tensor:
        """Stores the cell's audio latent; returns its video latent."""
        video, audio = out.unbind()
        self.latents[key] = audio.float().cpu()
        return video

    def decode(self, key) -> torch.Tensor:
        """``[C, S]`` waveform of one cell at ``sample_rate``."""
        return self.vae.decode(self.latents[key]).movedim(-1, 1)[0].float().cpu()
