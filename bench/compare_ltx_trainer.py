"""The ltx-trainer way and the LoRA Trainer node's code path, side by side on one GPU in one run.

ltx-trainer way: ltx-core's ``LTXModel`` built from LTX-2.3's transformer config, PEFT LoRA on
``to_k,to_q,to_v,to_out.0``, per-block checkpointing (``set_gradient_checkpointing``), bf16 autocast, processed
(post-connector) text context, AdamW + grad-clip 1.0, the text-to-video loss; what ltx-trainer sets up, minus its
data loader and its per-step connector pass. Node path: ComfyUI's ``LTXAVModel`` built under inference mode as
ComfyUI loads it, trained through ``comfy_adapters`` and the pack's ``LoraTrainer`` (as ``train_step.py --backend
comfyui``), eager or with the compiled block. Both models are full size with random N(0, 1/fan_in) bf16 weights
(meta device, ``to_empty``, then filled: never all-zero), one video-only sample, 1024 context tokens.

For each variant and bucket it prints s/step (median of ``--steps`` after ``--warmup``; the first step, which
holds any compile, separately), MFU (FLOPs of the pack's estimate over time, against the datasheet dense bf16 peak
and the matmul ceiling measured here), GPU-busy (kernel time of one profiled step over the median step), kernels
per step and peak memory, then the node/ltx-trainer ratios.

    python bench/compare_ltx_trainer.py --comfyui-root PATH --ltx-core PATH_TO_SITE \\
        --buckets 960x544x49,512x512x49 --variants node-compiled,node-eager,ltx
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from train_step import COMFY_LTX23_FULL, build_comfy_denoiser, random_init_  # noqa: E402
from trainer_core.cache.training_data import InMemoryData, TrainItem  # noqa: E402
from trainer_core.training.config import recipe_config  # noqa: E402
from trainer_core.training.estimate import estimate  # noqa: E402
from trainer_core.training.estimate_model import DATASHEET_BF16_FLOPS, Workload  # noqa: E402
from trainer_core.training.trainer import LoraTrainer  # noqa: E402

CONTEXT_TOKENS = 1024
GiB = 2 ** 30
# ltx-core's configurator insists on these values being present (they are LTX-2.x's fixed architecture).
LTX_FIXED = dict(dropout=0.0, attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                 use_linear_projection=False, only_cross_attention=False, cross_attention_norm=True,
                 double_self_attention=False, upcast_attention=False, standardization_norm="rms_norm",
                 norm_elementwise_affine=False, qk_norm="rms_norm", positional_embedding_type="rope",
                 use_audio_video_cross_attention=True, share_ff=False, av_cross_ada_norm=True, norm_eps=1e-6)


def latent_shape(bucket: str) -> tuple[int, int, int, int]:
    w, h, f = (int(v) for v in bucket.split("x"))
    return 128, (f - 1) // 8 + 1, h // 32, w // 32


def fill_random(model: torch.nn.Module, device: torch.device, seed: int = 0) -> None:
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            random_init_(name, p, gen)
        for name, b in model.named_buffers():
            if b.is_floating_point():
                random_init_(name, b, gen)


class StepTimer:
    """Stamps steps (after a device sync) and profiles the one step after the timed ones."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.stamps: list[float] = []
        self.profiler = None
        self.cpu: list[float] = []
        self.kernel_s = 0.0
        self.kernels = 0
        self.by_kind: dict[str, float] = {}

    @property
    def total(self) -> int:
        return self.warmup + self.steps + 1

    def start(self) -> None:
        torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def step_done(self) -> None:
        torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())
        self.cpu.append(time.process_time())
        done = len(self.stamps) - 1
        if done == self.warmup + self.steps:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.profiler.start()
        elif done == self.total and self.profiler is not None:
            self.profiler.stop()
            self._read_profile()

    def _read_profile(self) -> None:
        events = [e for e in self.profiler.events()
                  if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start]
        for e in events:
            kind = kernel_kind(e.name)
            self.by_kind[kind] = self.by_kind.get(kind, 0.0) + (e.time_range.end - e.time_range.start) / 1e6
        spans = sorted((e.time_range.start, e.time_range.end) for e in events)
        self.kernels = len(spans)
        busy, end = 0, None
        for s, e in spans:  # union of intervals (copies and kernels on any stream), microseconds
            if end is None or s > end:
                busy += e - s
                end = e
            elif e > end:
                busy += e - end
                end = e
        self.kernel_s = busy / 1e6

    def result(self) -> dict:
        times = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        timed = times[self.warmup:self.warmup + self.steps]
        median = statistics.median(timed)
        cpu = [b - a for a, b in zip(self.cpu, self.cpu[1:])][self.warmup:self.warmup + self.steps]
        return dict(s_per_step=median, min=min(timed), max=max(timed), n=len(timed), first_step=times[0],
                    host_cpu_s=statistics.median(cpu), kernel_s=self.kernel_s, kernels=self.kernels,
                    gpu_busy=min(1.0, self.kernel_s / median), **{f"{k}_s": v for k, v in self.by_kind.items()})


def kernel_kind(name: str) -> str:
    """Coarse kernel classes of a profiled step: what bounds it."""
    low = name.lower()
    if any(t in low for t in ("flash", "fmha", "cudnn", "attention", "sdpa")):
        return "attention"
    if any(t in low for t in ("gemm", "nvjet", "cutlass", "xmma", "matmul")):
        return "gemm"
    if low.startswith("triton"):
        return "triton"
    if "memcpy" in low or "memset" in low or "copy" in low:
        return "copy"
    return "other"


# -- the ltx-trainer way ---------------------------------------------------------------------------------------

def ltx_transformer_config() -> dict:
    keys = ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "num_layers",
            "cross_attention_dim", "positional_embedding_theta", "positional_embedding_max_pos",
            "timestep_scale_multiplier", "use_middle_indices_grid", "audio_num_attention_heads",
            "audio_attention_head_dim", "audio_in_channels", "audio_out_channels", "audio_cross_attention_dim",
            "audio_positional_embedding_max_pos", "av_ca_timestep_scale_multiplier", "rope_type",
            "frequencies_precision", "apply_gated_attention", "cross_attention_adaln", "caption_proj_before_connector")
    return {**LTX_FIXED, **{k: COMFY_LTX23_FULL[k] for k in keys}}


def run_ltx_trainer_way(buckets, rank: int, timer_args, device, checkpointing: bool) -> list[dict]:
    from ltx_core.components.patchifiers import VideoLatentPatchifier, get_pixel_coords
    from ltx_core.model.transformer.modality import Modality
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
    from ltx_core.types import VideoLatentShape
    from peft import LoraConfig, get_peft_model

    started = time.perf_counter()
    with torch.device("meta"):
        model = LTXModelConfigurator.from_config({"transformer": ltx_transformer_config()}).to(torch.bfloat16)
    model = model.to_empty(device=device)
    fill_random(model, device)
    model.set_gradient_checkpointing(checkpointing)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, init_lora_weights=True,
                                             target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    torch.cuda.synchronize()
    build_s = time.perf_counter() - started
    gen = torch.Generator().manual_seed(0)
    patchifier = VideoLatentPatchifier(patch_size=1)
    results = []
    for bucket in buckets:
        c, f, h, w = latent_shape(bucket)
        x0 = patchifier.patchify(torch.randn(1, c, f, h, w, generator=gen)).to(device, torch.bfloat16)
        context = torch.randn(1, CONTEXT_TOKENS, COMFY_LTX23_FULL["cross_attention_dim"], generator=gen)
        context = context.to(device, torch.bfloat16)
        mask = torch.ones(1, CONTEXT_TOKENS, dtype=torch.long, device=device)
        coords = patchifier.get_patch_grid_bounds(VideoLatentShape(1, c, f, h, w), device=device)
        positions = get_pixel_coords(coords, (8, 32, 32), causal_fix=True).float()
        positions[:, 0] = positions[:, 0] / 24.0
        timer = StepTimer(*timer_args)
        torch.cuda.reset_peak_memory_stats()
        timer.start()
        for _ in range(timer.total):
            sigma = torch.rand(1, generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device, torch.bfloat16)
            noisy = (1 - sigma.view(-1, 1, 1)) * x0 + sigma.view(-1, 1, 1) * noise
            video = Modality(latent=noisy.to(torch.bfloat16), sigma=sigma,
                             timesteps=sigma.view(1, 1).expand(1, x0.shape[1]), positions=positions,
                             context=context, context_mask=mask)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                pred, _ = model(video=video, audio=None, perturbations=None)
            loss = (pred.float() - (noise - x0).float()).pow(2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            timer.step_done()
        results.append(dict(variant="ltx", bucket=bucket, tokens=f * h * w, build_s=build_s,
                            peak_gib=torch.cuda.max_memory_allocated() / GiB,
                            lora_params=sum(p.numel() for p in params), **timer.result()))
        print_row(results[-1])
    del model, optimizer, params
    gc.collect()
    torch.cuda.empty_cache()
    return results


# -- the node path ---------------------------------------------------------------------------------------------

def run_node_path(dm, comfy_denoiser, variant: str, buckets, rank: int, timer_args, device,
                  checkpointing: bool) -> list[dict]:
    import torch._dynamo

    from torch._dynamo.utils import counters

    mode = variant.removeprefix("node-")
    torch._dynamo.reset()
    counters.clear()
    denoiser = comfy_denoiser.ComfyLTXDenoiser(dm)
    in_effect = denoiser.compile_blocks(device, mode)
    width = sum(denoiser.context_widths())
    gen = torch.Generator().manual_seed(0)
    results = []
    for bucket in buckets:
        latent = latent_shape(bucket)
        data = InMemoryData([TrainItem("bench", torch.randn(*latent, generator=gen),
                                       torch.randn(CONTEXT_TOKENS, width, generator=gen), fps=24.0)],
                            empty=torch.zeros(CONTEXT_TOKENS, width), name="bench")
        timer = StepTimer(*timer_args)
        cfg = recipe_config("character", steps=timer.total, rank=rank, alpha=rank, targets=("video_attn",),
                            gradient_checkpointing=checkpointing, checkpoint_every=10 ** 9, keep_checkpoints=1)
        work = Workload(video_shape=latent, context_tokens=CONTEXT_TOKENS, context_width=width)
        predicted = estimate(denoiser, cfg, work, device=device, compiled_blocks=in_effect != "eager")
        torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as out, torch.inference_mode(), comfy_denoiser.trainable_view(dm):
            trainer = LoraTrainer(denoiser, data, cfg, out, device=device,
                                  on_event=lambda e: timer.step_done() if e.kind == "step" else None)
            timer.start()
            trainer.run()
        graphs = dict(graphs=counters["stats"].get("unique_graphs", 0),
                      graph_breaks=sum(counters["graph_break"].values()))
        results.append(dict(variant=variant, mode=in_effect, bucket=bucket, **graphs, tokens=latent[1] * latent[2] * latent[3],
                            peak_gib=torch.cuda.max_memory_allocated() / GiB, flops=predicted.flops_per_step,
                            predicted_s=predicted.sec_per_step, predicted_peak_gib=predicted.vram.peak / GiB,
                            lora_params=sum(p.numel() for p in trainer.lora.trainable_parameters()), **timer.result()))
        print_row(results[-1])
        del trainer
        gc.collect()
    return results


# -- report ----------------------------------------------------------------------------------------------------

def matmul_ceiling(device) -> float:
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 20 * 2 * 8192 ** 3 / (start.elapsed_time(end) / 1e3)


def print_row(r: dict) -> None:
    print("RESULT " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)


def summary(results: list[dict], flops: dict, peak: float, ceiling: float) -> None:
    print(f"\n| variant | bucket | s/step (min-max) | first step s | MFU datasheet / ceiling | GPU busy | kernels | "
          f"peak GiB | vs ltx-trainer |")
    print("|---|---|---|---|---|---|---|---|---|")
    ltx = {r["bucket"]: r["s_per_step"] for r in results if r["variant"] == "ltx"}
    for r in results:
        f = flops.get(r["bucket"])
        mfu = f"{f / r['s_per_step'] / peak:.0%} / {f / r['s_per_step'] / ceiling:.0%}" if f else "-"
        ratio = f"{ltx[r['bucket']] / r['s_per_step']:.2f}x" if r["bucket"] in ltx else "-"
        print(f"| {r['variant']} | {r['bucket']} | {r['s_per_step']:.3f} ({r['min']:.3f}-{r['max']:.3f}) | "
              f"{r['first_step']:.1f} | {mfu} | {r['gpu_busy']:.0%} | {r['kernels']} | {r['peak_gib']:.1f} | "
              f"{ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui-root", required=True)
    ap.add_argument("--ltx-core", default="", help="a folder to put first on sys.path that holds ltx_core")
    ap.add_argument("--buckets", default="960x544x49,512x512x49")
    ap.add_argument("--variants", default="node-compiled,node-eager,ltx",
                    help="comma list of ltx, node-eager, node-compiled, node-compiled-checkpoint (run in order)")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--json", default="", help="also write every result to this file")
    args = ap.parse_args()
    if args.ltx_core:
        sys.path.insert(0, args.ltx_core)
    device = torch.device("cuda")
    buckets = args.buckets.split(",")
    timer_args = (args.warmup, args.steps)
    ckpt = not args.no_checkpointing
    ceiling = matmul_ceiling(device)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in DATASHEET_BF16_FLOPS.items() if k in name), DATASHEET_BF16_FLOPS["H100"])
    print(f"gpu={name} torch={torch.__version__} matmul_ceiling={ceiling / 1e12:.0f} TFLOP/s "
          f"datasheet={peak / 1e12:.0f} TFLOP/s rank={args.rank} checkpointing={ckpt}", flush=True)
    results: list[dict] = []
    dm = comfy_denoiser = None
    for variant in args.variants.split(","):
        try:
            if variant == "ltx":
                dm = comfy_denoiser = None
                gc.collect()
                torch.cuda.empty_cache()
                results += run_ltx_trainer_way(buckets, args.rank, timer_args, device, ckpt)
                continue
            if dm is None:
                dm, comfy_denoiser = build_comfy_denoiser(args.comfyui_root, device, torch.bfloat16)
                report = comfy_denoiser.ensure_training_forward_matches(dm, device)
                print(f"node path self-check max_rel_diff={report.max_rel_error:.1e}", flush=True)
            results += run_node_path(dm, comfy_denoiser, variant, buckets, args.rank, timer_args, device, ckpt)
        except Exception as exc:  # one variant failing must not lose the others' figures
            print(f"VARIANT {variant} FAILED: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
            gc.collect()
            torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    flops = {r["bucket"]: r["flops"] for r in results if "flops" in r}
    summary(results, flops, peak, ceiling)


if __name__ == "__main__":
    main()
