"""The audio<->video cross-attention AdaLN inputs the released LTX-2 / LTX-2.3 weights expect.

Each block's A->V and V->A attentions are modulated by four AdaLN embeddings. Three conventions exist:

* ComfyUI v0.20.x: scale/shift of each modality from the *other* modality's raw sigma (0..1), gates from the
  other's raw sigma times ``av_ca_timestep_scale_multiplier / timestep_scale_multiplier``.
* ltx-core before 2026-05-28: scale/shift and gate both from the other modality's sigma x 1000.
* ltx-core since 2026-05-28 (the 1.x pipelines Lightricks ships) and ComfyUI after Comfy-Org/ComfyUI#14097
  (merged 2026-05-25, written by a Lightricks engineer as "pass correct timesteps to cross-attention AdaLN
  modulation"): scale/shift from the modality's *own* per-token timestep x 1000, gate from the *other*
  modality's sigma x ``av_ca_timestep_scale_multiplier``.

Both runtimes Lightricks maintains converged on the last one, so it is what the weights were trained with. Training
here always uses it (``LTX_CORE``); ComfyUI v0.20.x's own forward still computes the first, so the denoiser
replaces the four embeddings in every block's arguments.
"""

from __future__ import annotations

import torch

from comfy.ldm.lightricks.av_model import CompressedTimestep

LTX_CORE = "ltx-core"
COMFY_V020 = "comfyui-0.20"


def cross_timesteps(dm, video_timesteps: torch.Tensor, audio_timesteps: torch.Tensor, video_sigma: torch.Tensor,
                    audio_sigma: torch.Tensor, patches_per_frame: int, dtype: torch.dtype) -> dict:
    """The four block arguments under ltx-core's convention.

    ``video_timesteps`` ``[B, F'*H'*W']`` and ``audio_timesteps`` ``[B, T]`` are per-token sigmas (0 on clean
    conditioning tokens); ``video_sigma``/``audio_sigma`` ``[B]`` the samples' sigmas. Video rows are embedded
    once per latent frame (the pack's conditioning is per frame) and kept compressed as ComfyUI keeps its own.
    """
    b = video_timesteps.shape[0]
    scale = dm.timestep_scale_multiplier
    per_frame = video_timesteps.reshape(b, -1, patches_per_frame)[:, :, 0]
    v_scale_shift = _expand_frames(_embed(dm.av_ca_video_scale_shift_adaln_single, per_frame * scale, dtype),
                                   patches_per_frame)
    a_scale_shift = _embed(dm.av_ca_audio_scale_shift_adaln_single, audio_timesteps * scale, dtype)
    # One gate row per sample broadcasts over that sample's tokens in the block's AdaLN.
    a2v_gate = _embed(dm.av_ca_a2v_gate_adaln_single, audio_sigma[:, None] * dm.av_ca_timestep_scale_multiplier,
                      dtype)
    v2a_gate = _embed(dm.av_ca_v2a_gate_adaln_single, video_sigma[:, None] * dm.av_ca_timestep_scale_multiplier,
                      dtype)
    return {"v_cross_scale_shift_timestep": v_scale_shift, "a_cross_scale_shift_timestep": a_scale_shift,
            "v_cross_gate_timestep": a2v_gate, "a_cross_gate_timestep": v2a_gate}


def _embed(adaln, t: torch.Tensor, dtype) -> torch.Tensor:
    b = t.shape[0]
    out, _ = adaln(t.flatten().to(next(adaln.parameters()).device), {"resolution": None, "aspect_ratio": None},
                   batch_size=b, hidden_dtype=dtype)
    return out.view(b, -1, out.shape[-1])


def _expand_frames(per_frame: torch.Tensor, patches_per_frame: int):
    b, f, d = per_frame.shape
    tokens = per_frame[:, :, None].expand(b, f, patches_per_frame, d).reshape(b, f * patches_per_frame, d)
    return CompressedTimestep(tokens, patches_per_frame)


def dense(timestep) -> torch.Tensor:
    """A block timestep argument as a plain ``[B, N, D]`` tensor (ComfyUI may hand a ``CompressedTimestep``)."""
    return timestep.expand() if isinstance(timestep, CompressedTimestep) else timestep


def installed_convention(captured: dict, reference: dict) -> str:
    """Which convention the installed ComfyUI computed: its captured block arguments against ltx-core's."""
    def close(a, b):
        a, b = dense(a).float(), dense(b).float()
        a, b = torch.broadcast_tensors(a, b)
        return torch.allclose(a, b, rtol=1e-3, atol=1e-4)
    return LTX_CORE if all(close(captured[k], reference[k]) for k in reference) else COMFY_V020


def cross_timestep_note(parity, train_audio: bool) -> str:
    """One line for the trainer's report when an audio run meets a ComfyUI that samples differently."""
    if not train_audio or parity.cross_timestep_convention != COMFY_V020:
        return ""
    return (f"\nnote: audio-video LoRA trained with the cross-modal timesteps the LTX weights expect (ltx-core); "
            f"ComfyUI {parity.comfyui_version} samples audio<->video attention with an older convention. Update "
            "ComfyUI (Comfy-Org/ComfyUI#14097) for sound and sync as in Lightricks' pipelines.")
