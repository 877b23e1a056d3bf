"""Full-size LTX-2.3 LoRA training step on one GPU: seconds per step and peak memory through the pack's trainer.

Builds the full LTX-2.3 DiT (48 blocks, video 32x128, audio 32x64, 2.3 flags) with random weights on the GPU,
then runs ``trainer_core.trainer.LoraTrainer`` (the loop every backend shares) on one precomputed-shaped sample:
video latent of the bucket, 1024 processed context tokens, video-only. Prints one line per configuration.

    python bench/train_step.py --bucket 960x544x49 --rank 32 --steps 8 --warmup 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer_core.config import recipe_config  # noqa: E402
from trainer_core.diffusers_denoiser import DiffusersLTX2Denoiser, ltx2_config  # noqa: E402
from trainer_core.trainer import LoraTrainer  # noqa: E402
from trainer_core.training_data import InMemoryData, TrainItem  # noqa: E402


def build_full_model(device: torch.device, dtype: torch.dtype, seed: int = 0):
    """Materialise the full-size DiT on the GPU without a CPU copy: meta build, then random N(0, 1/fan_in) weights
    (never all-zero weights, which time differently)."""
    from diffusers import LTX2VideoTransformer3DModel

    with torch.device("meta"):
        model = LTX2VideoTransformer3DModel(**ltx2_config("ltx-2.3", "full"))
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0, p.shape[-1] ** -0.5, generator=gen)
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02, generator=gen)
    return torch.nn.Module.to(model, dtype=dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bucket", default="960x544x49")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--targets", default="video_attn")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-checkpointing", action="store_true")
    args = ap.parse_args()

    device = torch.device("cuda")
    w, h, f = (int(v) for v in args.bucket.split("x"))
    latent = (128, (f - 1) // 8 + 1, h // 32, w // 32)
    started = time.perf_counter()
    model = build_full_model(device, torch.bfloat16)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    denoiser = DiffusersLTX2Denoiser(model, "ltx-2.3")
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
    with tempfile.TemporaryDirectory() as out:
        trainer = LoraTrainer(denoiser, data, cfg, out, on_event=on_event)
        stamps.append(time.perf_counter())
        trainer.run()
    peak = torch.cuda.max_memory_allocated()
    step_times = [b - a for a, b in zip(stamps[args.warmup:], stamps[args.warmup + 1:])]
    tokens = latent[1] * latent[2] * latent[3]
    print(f"gpu={torch.cuda.get_device_name()} torch={torch.__version__} params={params / 1e9:.2f}B "
          f"build={build_s:.1f}s bucket={args.bucket} tokens={tokens} rank={args.rank} targets={args.targets} "
          f"lora_params={sum(p.numel() for p in trainer.lora.trainable_parameters()) / 1e6:.1f}M "
          f"checkpointing={not args.no_checkpointing} s/step median={statistics.median(step_times):.3f} "
          f"min={min(step_times):.3f} max={max(step_times):.3f} (n={len(step_times)}) "
          f"model={before_train / 2**30:.1f}GiB peak={peak / 2**30:.1f}GiB "
          f"reserved={torch.cuda.max_memory_reserved() / 2**30:.1f}GiB", flush=True)


if __name__ == "__main__":
    main()
