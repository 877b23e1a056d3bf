"""Full-size LTX-2.3 LoRA training on a GPU budget smaller than the model: the LoRA Trainer node's code path with
ComfyUI streaming the weights that do not fit.

The model is loaded the way ComfyUI loads a diffusion-model file (``comfy.sd.load_diffusion_model_state_dict``
under inference mode, into a ModelPatcher with its weights in system RAM), from a state dict of random weights.
ComfyUI is told the GPU has only ``--budget-gib`` (its ``--reserve-vram`` setting); the node's training core
(``nodes/comfy_training.train_on_loaded_model``) then asks ComfyUI to load only what leaves room for training.
Prints the share of weights streamed, s/step and the peak GPU memory PyTorch allocated. ``--fp8`` stores the
weights in fp8 as UNETLoader's ``fp8_e4m3fn`` does (ComfyUI casts each layer up to bf16 per use).

    python bench/train_streaming.py --comfyui-root PATH --budget-gib 24 --bucket 960x544x49 --steps 6
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_step  # noqa: E402  (the shared full-size config, pack import and data helpers)

from trainer_core.training.config import recipe_config  # noqa: E402
from trainer_core.cache.training_data import InMemoryData, TrainItem  # noqa: E402


def random_state_dict(comfy_ops, device: torch.device) -> dict[str, torch.Tensor]:
    """What reading the official file gives ComfyUI: bf16 tensors in system RAM (random here, drawn on the GPU in
    pieces, which is far faster than on the CPU)."""
    from comfy.ldm.lightricks.av_model import LTXAVModel

    with torch.device("meta"):
        shapes = LTXAVModel(**train_step.COMFY_LTX23_FULL, dtype=torch.bfloat16, device="meta",
                            operations=comfy_ops.disable_weight_init).state_dict()
    gen = torch.Generator(device=device).manual_seed(0)
    sd = {}
    for name, meta in shapes.items():
        t = torch.empty(meta.shape, dtype=torch.bfloat16, device=device)
        train_step.random_init_(name, t, gen)
        sd[name] = t.cpu()
    return sd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui-root", required=True)
    ap.add_argument("--budget-gib", type=float, default=24.0)
    ap.add_argument("--bucket", default="960x544x49")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--fp8", action="store_true", help="store the weights in fp8 (UNETLoader's fp8_e4m3fn)")
    args = ap.parse_args()

    sys.path.insert(0, args.comfyui_root)
    from comfy.cli_args import args as comfy_args

    device = torch.device("cuda")
    total = torch.cuda.get_device_properties(device).total_memory
    comfy_args.reserve_vram = max(0.0, (total - args.budget_gib * 2**30) / 2**30)
    import comfy.model_management  # noqa: F401  (reads reserve_vram once, at import)
    import comfy.ops
    import comfy.sd

    started = time.perf_counter()
    sd = random_state_dict(comfy.ops, device)
    with torch.inference_mode():
        patcher = comfy.sd.load_diffusion_model_state_dict(
            sd, model_options={"dtype": torch.float8_e4m3fn} if args.fp8 else {},
            metadata={"config": json.dumps({"transformer": train_step.COMFY_LTX23_FULL})})
    del sd
    torch.cuda.empty_cache()
    load_s = time.perf_counter() - started
    comfy_training = train_step.import_pack_module("comfy_adapters.training")

    w, h, f = (int(v) for v in args.bucket.split("x"))
    latent = (128, (f - 1) // 8 + 1, h // 32, w // 32)
    dm = patcher.model.diffusion_model
    width = dm.cross_attention_dim + dm.audio_cross_attention_dim
    gen = torch.Generator().manual_seed(0)
    data = InMemoryData([TrainItem("bench", torch.randn(*latent, generator=gen),
                                   torch.randn(1024, width, generator=gen), fps=24.0)],
                        empty=torch.zeros(1024, width), name="bench")
    total_steps = args.warmup + args.steps
    cfg = recipe_config("character", steps=total_steps, rank=args.rank, alpha=args.rank,
                        checkpoint_every=10 ** 9, keep_checkpoints=1)
    torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out, torch.inference_mode():
        run = comfy_training.train_on_loaded_model(patcher, data, cfg, out)
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device)
    print(f"gpu={torch.cuda.get_device_name()} torch={torch.__version__} weights={'fp8' if args.fp8 else 'bf16'} "
          f"budget={args.budget_gib:g}GiB "
          f"(comfy reserve_vram={comfy_args.reserve_vram:.1f}GiB) load={load_s:.0f}s bucket={args.bucket} "
          f"rank={args.rank} streamed={run.streamed_fraction:.0%} of {patcher.model_size() / 2**30:.1f}GiB "
          f"probe s/step={run.preflight.sec_per_step:.2f} (measured={run.preflight.measured}) "
          f"run={wall:.0f}s for {total_steps} steps peak={peak / 2**30:.1f}GiB "
          f"self-check={run.parity.max_rel_error:.1e} loss={run.result.losses[-1]:.4f}", flush=True)
    print(run.preflight.summary(), flush=True)


if __name__ == "__main__":
    main()
