"""Full-size LTX-2.3 LoRA training step on one GPU: seconds per step and peak memory through the pack's trainer.

Builds the full LTX-2.3 DiT (48 blocks, video 32x128, audio 32x64, 2.3 flags) with random weights on the GPU,
then runs ``trainer_core.training.trainer.LoraTrainer`` (the loop every backend shares) on one precomputed-shaped sample:
video latent of the bucket, 1024 processed context tokens, video-only. Prints one line per configuration.

Backends: ``comfyui`` is the LoRA Trainer node's code path (ComfyUI's own ``LTXAVModel``, built under inference
mode as ComfyUI's loaders do, trained through ``comfy_adapters.denoiser``: start-up self-check, zero-copy weight
aliases, the autograd-safe block); it needs a ComfyUI source tree (``--comfyui-root``). ``diffusers`` is the
headless backend.

    python bench/train_step.py --backend comfyui --comfyui-root PATH --bucket 960x544x49 --rank 32
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer_core.training.config import recipe_config  # noqa: E402
from trainer_core.training.diffusers_denoiser import DiffusersLTX2Denoiser, ltx2_config  # noqa: E402
from trainer_core.training.trainer import LoraTrainer  # noqa: E402
from trainer_core.cache.training_data import InMemoryData, TrainItem  # noqa: E402


def build_full_model(device: torch.device, dtype: torch.dtype, seed: int = 0):
    """The full-size diffusers DiT on the GPU without a CPU copy: meta build, then random N(0, 1/fan_in) weights
    (never all-zero weights, which time differently)."""
    from diffusers import LTX2VideoTransformer3DModel

    with torch.device("meta"):
        model = LTX2VideoTransformer3DModel(**ltx2_config("ltx-2.3", "full"))
    model = model.to_empty(device=device)
    _random_fill(model, device, seed)
    return torch.nn.Module.to(model, dtype=dtype)


def random_init_(name: str, t: torch.Tensor, gen: torch.Generator) -> None:
    """N(0, 1/fan_in) matrices, unit norm weights, small other vectors: never all-zero weights, which time
    differently."""
    if t.ndim >= 2:
        t.normal_(0, t.shape[-1] ** -0.5, generator=gen)
    elif "norm" in name:
        t.fill_(1.0)
    else:
        t.normal_(0, 0.02, generator=gen)


def _random_fill(model: torch.nn.Module, device: torch.device, seed: int) -> None:
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            random_init_(name, p, gen)


COMFY_LTX23_FULL = dict(
    num_layers=48, attention_head_dim=128, num_attention_heads=32, cross_attention_dim=4096,
    audio_attention_head_dim=64, audio_num_attention_heads=32, audio_cross_attention_dim=2048, caption_channels=3840,
    in_channels=128, out_channels=128, audio_in_channels=128, audio_out_channels=128, apply_gated_attention=True,
    cross_attention_adaln=True, caption_proj_before_connector=True, caption_projection_first_linear=False,
    caption_proj_input_norm=False, caption_projection_second_linear=False, connector_num_attention_heads=32,
    connector_attention_head_dim=128, connector_num_layers=8, connector_apply_gated_attention=True,
    audio_connector_num_attention_heads=32, audio_connector_attention_head_dim=64, rope_type="split",
    frequencies_precision="float64", use_middle_indices_grid=True, positional_embedding_theta=10000.0,
    positional_embedding_max_pos=[20, 2048, 2048], audio_positional_embedding_max_pos=[20],
    timestep_scale_multiplier=1000, av_ca_timestep_scale_multiplier=1000)
"""ComfyUI's ``config.transformer`` for the full LTX-2.3 DiT (what the official checkpoint's metadata carries)."""


def import_pack_module(name: str):
    """A module of the pack (``comfy_adapters.denoiser``, say) loaded as ComfyUI loads the pack, minus the node
    registry (the pack's ``__init__`` needs ComfyUI's API package and its front-end dependencies, which a training
    step does not)."""
    if "ltx23_trainer" not in sys.modules:
        package = types.ModuleType("ltx23_trainer")
        package.__path__ = [str(REPO)]
        sys.modules["ltx23_trainer"] = package
    return importlib.import_module(f"ltx23_trainer.{name}")


def build_comfy_denoiser(comfyui_root: str, device: torch.device, dtype: torch.dtype):
    """ComfyUI's LTX-2.3 DiT at full size, made under inference mode like a loaded checkpoint, and the pack's
    node-layer denoiser over it."""
    sys.path.insert(0, comfyui_root)
    import comfy.model_management  # noqa: F401  (sets up devices before the model code imports it)
    import comfy.ops
    from comfy.ldm.lightricks.av_model import LTXAVModel

    comfy_denoiser = import_pack_module("comfy_adapters.denoiser")
    with torch.inference_mode():
        dm = LTXAVModel(**COMFY_LTX23_FULL, dtype=dtype, device="meta", operations=comfy.ops.disable_weight_init)
        dm = dm.to_empty(device=device)
        _random_fill(dm, device, seed=0)
    return dm, comfy_denoiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bucket", default="960x544x49")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--targets", default="video_attn")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--backend", choices=["comfyui", "diffusers"], default="comfyui")
    ap.add_argument("--comfyui-root", default="", help="ComfyUI source tree (for --backend comfyui)")
    args = ap.parse_args()

    device = torch.device("cuda")
    w, h, f = (int(v) for v in args.bucket.split("x"))
    latent = (128, (f - 1) // 8 + 1, h // 32, w // 32)
    started = time.perf_counter()
    view = contextlib.nullcontext()
    parity = ""
    if args.backend == "comfyui":
        model, comfy_denoiser = build_comfy_denoiser(args.comfyui_root, device, torch.bfloat16)
        denoiser = comfy_denoiser.ComfyLTXDenoiser(model)
        report = comfy_denoiser.ensure_training_forward_matches(model, device)
        parity = f"self-check max_rel_diff={report.max_rel_error:.1e} "
        view = comfy_denoiser.trainable_view(model)
    else:
        model = build_full_model(device, torch.bfloat16)
        denoiser = DiffusersLTX2Denoiser(model, "ltx-2.3")
    torch.cuda.synchronize()
    build_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    width = sum(denoiser.context_widths())
    data = InMemoryData([TrainItem("bench", torch.randn(*latent, generator=gen), torch.randn(1024, width, generator=gen),
                                   fps=24.0)], empty=torch.zeros(1024, width), name="bench")
    total = args.warmup + args.steps
    cfg = recipe_config("character", steps=total, rank=args.rank, alpha=args.rank, targets=tuple(args.targets.split(",")),
                        gradient_checkpointing=not args.no_checkpointing, checkpoint_every=10 ** 9, keep_checkpoints=1)
    stamps: list[float] = []

    def on_event(event):
        if event.kind == "step":
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    before_train = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    # As ComfyUI runs nodes: inference mode around everything, the trainer leaves it itself.
    with tempfile.TemporaryDirectory() as out, torch.inference_mode(), view:
        trainer = LoraTrainer(denoiser, data, cfg, out, on_event=on_event, device=device)
        stamps.append(time.perf_counter())
        trainer.run()
    peak = torch.cuda.max_memory_allocated()
    step_times = [b - a for a, b in zip(stamps[args.warmup:], stamps[args.warmup + 1:])]
    tokens = latent[1] * latent[2] * latent[3]
    print(f"backend={args.backend} gpu={torch.cuda.get_device_name()} torch={torch.__version__} "
          f"params={params / 1e9:.2f}B {parity}"
          f"build={build_s:.1f}s bucket={args.bucket} tokens={tokens} rank={args.rank} targets={args.targets} "
          f"lora_params={sum(p.numel() for p in trainer.lora.trainable_parameters()) / 1e6:.1f}M "
          f"checkpointing={not args.no_checkpointing} s/step median={statistics.median(step_times):.3f} "
          f"min={min(step_times):.3f} max={max(step_times):.3f} (n={len(step_times)}) "
          f"model={before_train / 2**30:.1f}GiB peak={peak / 2**30:.1f}GiB "
          f"reserved={torch.cuda.max_memory_reserved() / 2**30:.1f}GiB", flush=True)


if __name__ == "__main__":
    main()
