"""Full-size LTX-2.3 LoRA training on a GPU budget smaller than the model: the LoRA Trainer node's code path with
ComfyUI streaming the weights that do not fit.

The model is loaded the way ComfyUI loads a diffusion-model file (``comfy.sd.load_diffusion_model_state_dict``
under inference mode, into a ModelPatcher with its weights in system RAM), from a state dict of random weights.
ComfyUI is told the GPU has only ``--budget-gib`` (its ``--reserve-vram`` setting); the node's training core
(``nodes/comfy_training.train_on_loaded_model``) then asks ComfyUI to load only what leaves room for training.
Prints the share of weights streamed, s/step and the peak GPU memory PyTorch allocated. ``--fp8`` stores the
weights in fp8 as UNETLoader's ``fp8_e4m3fn`` does (ComfyUI casts each layer up to bf16 per use).

``--dynamic`` turns on ComfyUI's dynamic VRAM (comfy-aimdo) exactly as ``main.py`` does on NVIDIA, which is what
every NVIDIA user gets by default; ``--memory-log FILE`` writes per-step CUDA allocated/reserved, device-wide used
memory (aimdo maps its weight pages outside PyTorch's allocator) and host RSS, and the script prints the growth
between the first and the last quarter of the steps (flat memory: well under 1 %).

    python bench/train_streaming.py --comfyui-root PATH --budget-gib 24 --bucket 960x544x49 --steps 6 [--dynamic]
"""

from __future__ import annotations

import argparse
import json
import os
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


def enable_dynamic_vram() -> None:
    """``main.py``'s switch after ``comfy_aimdo.control.init()`` (called before CUDA is first used): aimdo's
    device, then the patcher."""
    import comfy_aimdo.control

    import comfy.memory_management
    import comfy.model_management
    import comfy.model_patcher

    if not comfy_aimdo.control.init_device(comfy.model_management.get_torch_device().index):
        raise SystemExit("comfy-aimdo found no working device: dynamic VRAM would be off in ComfyUI too")
    comfy_aimdo.control.set_log_info()  # main.py's default; aimdo otherwise logs every page fault
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    comfy.memory_management.aimdo_enabled = True


def host_rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(probe_cls, device: torch.device, rows: list[dict], blocker_bytes: int = 0, log: str | None = None):
    """The node's probe, also recording memory after every step and the pre-flight peak before it is refined
    (appended to ``log`` as it goes, so a run cut short keeps its figures)."""

    class MemoryProbe(probe_cls):
        def __init__(self, preflight, progress, dev):
            super().__init__(preflight, progress, dev)
            rows.append({"preflight_peak": preflight.vram.peak})
            if log:
                with open(log, "a") as f:
                    f.write(json.dumps(rows[-1]) + "\n")

        def __call__(self, event) -> None:
            if event.kind == "step":
                free, total = torch.cuda.mem_get_info(device)
                rows.append({"step": event.step, "loss": event.loss, "time": time.perf_counter(),
                             "allocated": torch.cuda.memory_allocated(device) - blocker_bytes,
                             "reserved": torch.cuda.memory_reserved(device) - blocker_bytes,
                             "device_used": total - free - blocker_bytes,
                             "max_allocated": torch.cuda.max_memory_allocated(device) - blocker_bytes,
                             "rss": host_rss()})
                if log:
                    with open(log, "a") as f:
                        f.write(json.dumps(rows[-1]) + "\n")
                if event.step % 25 == 0:
                    print(f"step {event.step}: loss {event.loss:.4f} allocated {rows[-1]['allocated'] / 2**30:.3f}GiB "
                          f"device used {rows[-1]['device_used'] / 2**30:.3f}GiB", flush=True)
            super().__call__(event)

    return MemoryProbe


def growth(rows: list[dict], key: str) -> float:
    quarter = max(1, len(rows) // 4)
    first = sum(r[key] for r in rows[:quarter]) / quarter
    last = sum(r[key] for r in rows[-quarter:]) / quarter
    return last / first - 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui-root", required=True)
    ap.add_argument("--budget-gib", type=float, default=24.0)
    ap.add_argument("--bucket", default="960x544x49")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--fp8", action="store_true", help="store the weights in fp8 (UNETLoader's fp8_e4m3fn)")
    ap.add_argument("--dynamic", action="store_true", help="ComfyUI's dynamic VRAM (comfy-aimdo), as main.py on NVIDIA")
    ap.add_argument("--occupy", action="store_true",
                    help="hold (card - budget) GiB in a blocker tensor instead of --reserve-vram, so that aimdo, "
                         "which ignores ComfyUI's reserve, also sees only the budget; the blocker is subtracted "
                         "from every printed figure")
    ap.add_argument("--memory-log", help="write per-step memory and loss as JSON lines to this file")
    args = ap.parse_args()

    sys.path.insert(0, args.comfyui_root)
    from comfy.cli_args import args as comfy_args

    if args.dynamic:
        import comfy_aimdo.control

        comfy_aimdo.control.init()
    device = torch.device("cuda")
    total = torch.cuda.get_device_properties(device).total_memory
    blocker_bytes = 0
    if args.occupy:
        blocker_bytes = max(0, int(total - args.budget_gib * 2**30))
        blocker = torch.empty(blocker_bytes, dtype=torch.uint8, device=device)  # noqa: F841  (held to the end)
    else:
        comfy_args.reserve_vram = max(0.0, (total - args.budget_gib * 2**30) / 2**30)
    if args.dynamic:
        enable_dynamic_vram()
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
    rows: list[dict] = []
    comfy_training._Probe = memory_probe(comfy_training._Probe, device, rows, blocker_bytes, args.memory_log)
    torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out, torch.inference_mode():
        run = comfy_training.train_on_loaded_model(patcher, data, cfg, out)
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) - blocker_bytes
    steps = [r for r in rows if "step" in r]
    tail = steps[args.warmup:]
    step_s = sorted(b["time"] - a["time"] for a, b in zip(tail, tail[1:]))
    print(f"mode={'dynamic' if args.dynamic else 'classic'} patcher={type(patcher).__name__} "
          f"s/step median={step_s[len(step_s) // 2]:.3f} over {len(step_s)} steps; "
          f"pre-flight peak={rows[0]['preflight_peak'] / 2**30:.2f}GiB measured max_allocated={peak / 2**30:.2f}GiB "
          f"(error {rows[0]['preflight_peak'] / peak - 1:+.1%}); device used max={max(r['device_used'] for r in steps) / 2**30:.2f}GiB "
          f"reserved max={max(r['reserved'] for r in steps) / 2**30:.2f}GiB rss max={max(r['rss'] for r in steps) / 2**30:.1f}GiB; "
          f"growth first->last quarter: allocated {growth(tail, 'allocated'):+.3%} reserved {growth(tail, 'reserved'):+.3%} "
          f"device used {growth(tail, 'device_used'):+.3%} rss {growth(tail, 'rss'):+.3%}", flush=True)
    print("losses[:12]=" + ",".join(f"{r['loss']:.5f}" for r in steps[:12]), flush=True)
    print(f"gpu={torch.cuda.get_device_name()} torch={torch.__version__} weights={'fp8' if args.fp8 else 'bf16'} "
          f"budget={args.budget_gib:g}GiB "
          f"({'held blocker' if args.occupy else f'comfy reserve_vram={comfy_args.reserve_vram:.1f}GiB'}) load={load_s:.0f}s bucket={args.bucket} "
          f"rank={args.rank} streamed={run.streamed_fraction:.0%} of {patcher.model_size() / 2**30:.1f}GiB "
          f"probe s/step={run.preflight.sec_per_step:.2f} (measured={run.preflight.measured}) "
          f"run={wall:.0f}s for {total_steps} steps peak={peak / 2**30:.1f}GiB "
          f"self-check={run.parity.max_rel_error:.1e} loss={run.result.losses[-1]:.4f}", flush=True)
    print(run.preflight.summary(), flush=True)


if __name__ == "__main__":
    main()
