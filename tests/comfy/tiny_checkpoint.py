"""Tiny random-weight LTX-2.3 / LTX-2.0 checkpoints that stock ComfyUI loads (notes §8).

A full checkpoint holds ``model.diffusion_model.*``, ``vae.*``, ``audio_vae.*`` and ``vocoder.*`` plus the
safetensors metadata ``config`` JSON. The metadata is what makes it tiny *and* what makes it 2.3: detection
only infers layers and widths from shapes (assuming 32 heads), then ``config.transformer`` overrides.

The transformer dims equal the tiny diffusers ``LTX2VideoTransformer3DModel`` that ``trainer_core`` tests use,
so a LoRA trained there loads here with the same shapes. ``build_inputs`` and ``dit_forward`` drive a loaded
tiny MODEL. Comfy is imported inside functions: this module is imported at collection time, also where ComfyUI
is absent.
"""

from __future__ import annotations

import copy
import json
import os

import torch

# Shared by the lead's tiny diffusers model: keep in sync with trainer_core's test model.
NUM_LAYERS = 2
VIDEO_HEADS, VIDEO_HEAD_DIM = 2, 8
AUDIO_HEADS, AUDIO_HEAD_DIM = 2, 4
CAPTION_CHANNELS = 32

_COMMON_TRANSFORMER = {
    "num_layers": NUM_LAYERS,
    "num_attention_heads": VIDEO_HEADS,
    "attention_head_dim": VIDEO_HEAD_DIM,
    "cross_attention_dim": VIDEO_HEADS * VIDEO_HEAD_DIM,
    "audio_num_attention_heads": AUDIO_HEADS,
    "audio_attention_head_dim": AUDIO_HEAD_DIM,
    "audio_cross_attention_dim": AUDIO_HEADS * AUDIO_HEAD_DIM,
    "in_channels": 128,
    "out_channels": 128,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "caption_channels": CAPTION_CHANNELS,
    "rope_type": "split",
    "frequencies_precision": "float64",
    "use_middle_indices_grid": True,
    "positional_embedding_theta": 10000.0,
    "positional_embedding_max_pos": [20, 2048, 2048],
    "audio_positional_embedding_max_pos": [20],
    "timestep_scale_multiplier": 1000,
    "av_ca_timestep_scale_multiplier": 1000,
    "connector_num_layers": 1,
}

TRANSFORMER_CONFIGS = {
    "2.3": {
        **_COMMON_TRANSFORMER,
        "apply_gated_attention": True,
        "cross_attention_adaln": True,
        "caption_proj_before_connector": True,
        "connector_apply_gated_attention": True,
        "caption_projection_first_linear": False,
        "caption_proj_input_norm": False,
        "caption_projection_second_linear": False,
        # The connectors must produce exactly the DiT's cross-attention widths.
        "connector_num_attention_heads": VIDEO_HEADS,
        "connector_attention_head_dim": VIDEO_HEAD_DIM,
        "audio_connector_num_attention_heads": AUDIO_HEADS,
        "audio_connector_attention_head_dim": AUDIO_HEAD_DIM,
    },
    "2.0": {
        **_COMMON_TRANSFORMER,
        # 2.0 projects captions to caption_channels before both connectors.
        "connector_num_attention_heads": 2,
        "connector_attention_head_dim": CAPTION_CHANNELS // 2,
    },
}

_VAE_ENCODER_BLOCKS = [
    ["res_x", {"num_layers": 1}],
    ["compress_space_res", {"multiplier": 2}],
    ["res_x", {"num_layers": 1}],
    ["compress_time_res", {"multiplier": 2}],
    ["res_x", {"num_layers": 1}],
    ["compress_all_res", {"multiplier": 2}],
    ["res_x", {"num_layers": 1}],
    ["compress_all_res", {"multiplier": 2}],
    ["res_x", {"num_layers": 1}],
]

_VAE_COMMON = {
    "_class_name": "CausalVideoAutoencoder",
    "dims": 3,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "encoder_base_channels": 8,
    "decoder_base_channels": 8,
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "use_quant_conv": False,
    "causal_decoder": False,
    "scaling_factor": 1.0,
    "encoder_blocks": _VAE_ENCODER_BLOCKS,
}

VAE_CONFIGS = {
    # 2.3-style decoder: separate space/time upsamplers; keeps the 8x32x32 compression of the real model.
    "2.3": {
        **_VAE_COMMON,
        "decoder_blocks": [
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_time", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_space", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1}],
        ],
        "timestep_conditioning": False,
    },
    "2.0": {
        **_VAE_COMMON,
        "decoder_blocks": [
            ["res_x", {"num_layers": 1, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1, "inject_noise": False}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1, "inject_noise": False}],
        ],
        "timestep_conditioning": True,
    },
}

AUDIO_VAE_CONFIG = {
    "model": {
        "params": {
            "ddconfig": {
                "double_z": True,
                "mel_bins": 64,
                "z_channels": 8,
                "resolution": 256,
                "downsample_time": False,
                "in_channels": 2,
                "out_ch": 2,
                "ch": 8,
                "ch_mult": [1, 2, 4],
                "num_res_blocks": 1,
                "attn_resolutions": [],
                "dropout": 0.0,
                "mid_block_add_attention": False,
                "norm_type": "pixel",
                "causality_axis": "height",
            },
            "sampling_rate": 16000,
        }
    },
    "preprocessing": {"stft": {"filter_length": 1024, "hop_length": 160}},
}

VOCODER_CONFIG = {
    "resblock_kernel_sizes": [3],
    "upsample_rates": [5, 4, 2, 2, 2],  # product = STFT hop 160
    "upsample_kernel_sizes": [10, 8, 4, 4, 4],
    "resblock_dilation_sizes": [[1, 3, 5]],
    "upsample_initial_channel": 32,
    "stereo": True,
    "resblock": "1",
    "activation": "snake",
    "use_bias_at_final": True,
    "use_tanh_at_final": True,
}

VERSIONS = tuple(TRANSFORMER_CONFIGS)

# The demo's and the learning bed's wider 2.3 model (trainer_core's "learnable" diffusers size).
LEARNABLE_2_3 = {"num_attention_heads": 4, "attention_head_dim": 16, "cross_attention_dim": 64,
                 "connector_num_attention_heads": 4, "connector_attention_head_dim": 16}


def checkpoint_config(version: str = "2.3", learnable: bool = False) -> dict:
    """The ``config`` metadata object of a tiny checkpoint (a fresh copy: callers may edit it)."""
    return copy.deepcopy({
        "transformer": {**TRANSFORMER_CONFIGS[version], **(LEARNABLE_2_3 if learnable else {})},
        "vae": VAE_CONFIGS[version],
        "audio_vae": AUDIO_VAE_CONFIG,
        "vocoder": VOCODER_CONFIG,
    })


def context_width(version: str = "2.3") -> int:
    """Width of *processed* conditioning the tiny DiT takes (video and audio parts concatenated)."""
    cfg = TRANSFORMER_CONFIGS[version]
    if cfg.get("caption_proj_before_connector"):
        return cfg["cross_attention_dim"] + cfg["audio_cross_attention_dim"]
    return 2 * cfg["caption_channels"]


def raw_text_width(version: str = "2.3") -> int:
    """Width of *raw* text-encoder output the tiny model's connectors take (2.3: video + audio cross widths,
    standing in for 4096 + 2048; 2.0: caption_channels, standing in for 3840)."""
    cfg = TRANSFORMER_CONFIGS[version]
    if cfg.get("caption_proj_before_connector"):
        return cfg["cross_attention_dim"] + cfg["audio_cross_attention_dim"]
    return cfg["caption_channels"]


def _randomize(module: torch.nn.Module, generator: torch.Generator,
               fan_in_scale: bool = False) -> dict[str, torch.Tensor]:
    # comfy.ops.disable_weight_init leaves parameters uninitialised, so every parameter is written here.
    # Buffers are kept (mel bases, resampling filters) except the latent statistics, which are torch.empty too.
    sd = {}
    params = dict(module.named_parameters())
    for name, tensor in module.state_dict().items():
        if name.endswith("std-of-means"):
            sd[name] = torch.ones_like(tensor)
        elif name.endswith("mean-of-means"):
            sd[name] = torch.zeros_like(tensor)
        elif name not in params:
            sd[name] = tensor.clone()
        elif tensor.ndim == 1 and "norm" in name and name.endswith(".weight"):
            sd[name] = torch.ones_like(tensor)
        else:
            # The DiT gets N(0, 1/fan_in) matrices, as trained layers roughly have: with a flat 0.02 its output is
            # near zero whatever the input, and a LoRA on it can barely move the loss.
            std = tensor.shape[-1] ** -0.5 if fan_in_scale and tensor.ndim >= 2 else 0.02
            sd[name] = torch.randn(tensor.shape, generator=generator, dtype=torch.float32).mul_(std).to(tensor.dtype)
    return sd


def build_state_dict(version: str = "2.3", seed: int = 0,
                     learnable: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Full-checkpoint state dict and safetensors metadata; deterministic in ``seed``."""
    import comfy.ops
    from comfy.ldm.lightricks.av_model import LTXAVModel
    from comfy.ldm.lightricks.vae.audio_vae import AudioVAE
    from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE

    config = checkpoint_config(version, learnable)
    metadata = {"config": json.dumps(config)}
    generator = torch.Generator().manual_seed(seed)
    sd = {}

    dit = LTXAVModel(**config["transformer"], dtype=torch.float32, device="cpu",
                     operations=comfy.ops.disable_weight_init)
    sd.update({f"model.diffusion_model.{k}": v for k, v in _randomize(dit, generator, fan_in_scale=True).items()})

    vae = VideoVAE(config=config["vae"])
    sd.update({f"vae.{k}": v for k, v in _randomize(vae, generator).items()})

    # AudioVAE nests the autoencoder as ``autoencoder.``; the checkpoint spells it ``audio_vae.``.
    audio = AudioVAE(metadata=metadata)
    for k, v in _randomize(audio, generator).items():
        sd["audio_vae." + k.removeprefix("autoencoder.") if k.startswith("autoencoder.") else k] = v
    return {k: v.contiguous() for k, v in sd.items()}, metadata


def write_tiny_checkpoint(path: str, version: str = "2.3", seed: int = 0, learnable: bool = False) -> str:
    """Writes a tiny full checkpoint to ``path`` and returns it."""
    from safetensors.torch import save_file

    sd, metadata = build_state_dict(version, seed, learnable)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(sd, path, metadata=metadata)
    return path


def load_checkpoint(ckpt_name: str):
    """(MODEL, CLIP, VAE) from stock ``CheckpointLoaderSimple``, run as ComfyUI runs nodes.

    ``ckpt_name`` is relative to the checkpoints folder. CLIP is None: the checkpoint has no text encoder.
    """
    from comfy_harness import run_node

    return tuple(run_node("CheckpointLoaderSimple", ckpt_name=ckpt_name))


def is_ltx23(model) -> bool:
    """What ComfyUI's run time makes of a loaded MODEL: the 2.3 flags of its DiT."""
    dit = model.model.diffusion_model
    return bool(dit.cross_attention_adaln and dit.caption_proj_before_connector and dit.apply_gated_attention)


def build_inputs(model, *, frames: int = 2, height: int = 2, width: int = 2, audio_frames: int = 5,
                 context_tokens: int = 8, sigma: float = 0.5, frame_rate: float = 25.0, seed: int = 0) -> dict:
    """Random inputs of the widths a loaded LTXAV MODEL takes, for a direct DiT forward or a sampler.

    Shapes are in latent units (video ``[1,128,F',H',W']``, audio ``[1,8,T,16]``). ``context`` is *processed*
    conditioning, so it skips the text connectors as the pack's cached conditioning does. Deterministic in
    ``seed``; made outside inference mode, so wrap uses in the mode the code under test expects.
    """
    dit = model.model.diffusion_model
    if dit.caption_proj_before_connector:
        ctx_width = dit.cross_attention_dim + dit.audio_cross_attention_dim
    else:
        ctx_width = 2 * dit.caption_channels
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(1, context_tokens, ctx_width, generator=generator)
    return {
        "video": torch.randn(1, dit.in_channels, frames, height, width, generator=generator),
        "audio": torch.randn(1, dit.num_audio_channels, audio_frames, dit.audio_frequency_bins, generator=generator),
        "context": context,
        "sigma": torch.tensor([sigma]),
        "frame_rate": frame_rate,
        "conditioning": [[context, {"frame_rate": frame_rate}]],
    }


def dit_forward(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(video, audio) velocity of the DiT for ``build_inputs`` output, with the MODEL's patches applied.

    ``load_models_gpu`` is what applies (and, for another clone of the same weights, removes) LoRA patches,
    so outputs of different clones are comparable call by call.
    """
    import comfy.model_management

    comfy.model_management.load_models_gpu([model], force_full_load=True)
    with torch.inference_mode():
        video, audio = model.model.diffusion_model(
            [inputs["video"], inputs["audio"]], inputs["sigma"], inputs["context"], frame_rate=inputs["frame_rate"])
    return video, audio


def random_dit(version: str, dtype=torch.float32, seed: int = 0):
    """A tiny LTXAVModel built the way ComfyUI builds it, with random weights (float64 for the gradient check)."""
    import comfy.ops
    from comfy.ldm.lightricks.av_model import LTXAVModel

    cfg = checkpoint_config(version)["transformer"]
    dm = LTXAVModel(**cfg, dtype=dtype, device="cpu", operations=comfy.ops.disable_weight_init)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in dm.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith(".weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).mul(0.3 / max(1, p.shape[-1]) ** 0.5))
    return dm
