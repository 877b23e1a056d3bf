"""Pre-flight estimate of a LoRA run: GPU memory, system RAM, disk and time before the first step, what to change
when it will not fit, and the refinement from a short probe of real steps. The byte and FLOP model behind it, and
its calibration, is ``estimate_model``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import statistics
from pathlib import Path

import torch

from .config import TrainConfig
from .denoiser import Denoiser
from ..problems import ERROR, Problem
from .estimate_model import (ALLOCATOR_SLACK, BLOCK_OVERHEAD_S, COMPILED_BLOCK_OVERHEAD_S, ModelShape, Plan, Vram,
                             Workload, checkpoint_bytes, device_throughput, flops_per_step, lora_parameters,
                             optimizer_state_bytes, ram_bytes, vram_breakdown)

GiB = 2 ** 30


class WillNotFit(ValueError):
    """The run needs more GPU memory, RAM or disk than there is; the message names the fixes."""


@dataclasses.dataclass(frozen=True)
class Fix:
    description: str
    vram: int
    fits: bool


@dataclasses.dataclass
class Estimate:
    """All sizes in bytes, all times in seconds. ``measured`` is True once a probe replaced the guesses."""

    bucket: str
    video_tokens: int
    lora_params: int
    lora_bytes: int
    """fp32 masters on the device."""
    optimizer_bytes: int
    """Optimizer moments on the device (what a checkpoint stores besides the LoRA)."""
    vram: Vram
    vram_available: int | None
    ram_bytes: int
    ram_available: int | None
    disk_bytes: int
    disk_free: int | None
    checkpoint_bytes: int
    """One checkpoint: the .ckpt plus its bf16 LoRA file."""
    lora_file_bytes: int
    flops_per_step: float
    sec_per_step: float
    steps: int
    fixes: list[Fix] = dataclasses.field(default_factory=list)
    """When the GPU memory does not fit: alternatives with what each would need, biggest saving first."""
    measured: bool = False

    @property
    def vram_bytes(self) -> int:
        return self.vram.peak

    @property
    def eta_sec(self) -> float:
        return self.sec_per_step * self.steps

    @property
    def problems(self) -> list[Problem]:
        found = []
        if self.vram_available is not None and self.vram.peak * (1 + ALLOCATOR_SLACK) > self.vram_available:
            fixes = "; ".join(f"{f.description} (~{format_bytes(f.vram)}{'' if f.fits else ', still too much'})"
                              for f in self.fixes) or "train on a GPU with more memory"
            found.append(Problem(ERROR, "vram", f"training needs ~{format_bytes(self.vram.peak)} of GPU memory at bucket "
                                 f"{self.bucket}, {format_bytes(self.vram_available)} available", fixes))
        if self.ram_available is not None and self.ram_bytes > self.ram_available:
            found.append(Problem(ERROR, "ram", f"training needs ~{format_bytes(self.ram_bytes)} of system RAM, "
                                 f"{format_bytes(self.ram_available)} available",
                                 "close other programs, stream fewer weights, or lower the rank"))
        if self.disk_free is not None and self.disk_bytes > self.disk_free:
            found.append(Problem(ERROR, "disk", f"checkpoints need ~{format_bytes(self.disk_bytes)} of disk, "
                                 f"{format_bytes(self.disk_free)} free in the output folder",
                                 "free disk space, keep fewer checkpoints, or write to another drive"))
        return found

    @property
    def fits(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        v = self.vram
        source = "measured" if self.measured else "estimated"
        lines = [
            f"Pre-flight ({source}), bucket {self.bucket} ({self.video_tokens} tokens), "
            f"LoRA {self.lora_params / 1e6:.1f} M params",
            f"GPU memory: {format_bytes(v.peak)}{_of(self.vram_available)} (weights {format_bytes(v.weights)}, LoRA + optimizer "
            f"{format_bytes(v.lora + v.optimizer)}, activations {format_bytes(v.activations)}; peak in the {v.peak_in})",
            f"System RAM: {format_bytes(self.ram_bytes)}{_of(self.ram_available)}",
            f"Disk: {format_bytes(self.disk_bytes)}{_of(self.disk_free, 'free')} "
            f"({format_bytes(self.checkpoint_bytes)} per checkpoint)",
            f"Time: {self.sec_per_step:.2f} s/step, {self.steps} steps, ~{_duration(self.eta_sec)}",
        ]
        lines += [p.line() for p in self.problems]
        return "\n".join(lines)

    def raise_if_unfit(self) -> None:
        problems = self.problems
        if problems:
            raise WillNotFit("; ".join(p.line() for p in problems))


def format_bytes(n: float) -> str:
    """GiB with one decimal for real runs; smaller units for the small runs (tests, the demo) so they never read
    as 0.0 GiB."""
    for unit, size in (("GiB", GiB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size or unit == "KiB":
            return f"{n / size:.1f} {unit}"


def _of(available: int | None, word: str = "available") -> str:
    return "" if available is None else f" of {format_bytes(available)} {word}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def disk_free(path: str | os.PathLike) -> int:
    """Free bytes on the drive that will hold ``path`` (which need not exist yet)."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def system_ram_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def device_memory_available(device: torch.device | str) -> int | None:
    """What this process may use on a CUDA device: the driver's free memory plus what PyTorch already holds (the
    weights loaded there count towards the run, and PyTorch reuses its own cache)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device)


def estimate(denoiser: Denoiser, config: TrainConfig, workload: Workload, *, device: torch.device | str = "cuda",
             vram_available: int | None = None, ram_available: int | None = None,
             output_dir: str | os.PathLike | None = None, offload_fraction: float = 0.0,
             throughput: float | None = None, compiled_blocks: bool = False) -> Estimate:
    """Estimate a run of ``config`` on ``workload`` (see ``largest_workload``) before any step.

    ``vram_available`` is everything the run may use on the GPU including the weights already there (the node
    gets it from ComfyUI's model management, headless code from ``device_memory_available``); ``None`` skips
    the check. ``offload_fraction`` is the share of base weights ComfyUI streams from RAM. ``throughput`` (FLOP/s)
    overrides ``device_throughput(device)``. ``compiled_blocks``: the training block runs compiled (CUDA only)."""
    config.validate()
    shape = ModelShape.of(denoiser)
    plan = Plan.of(config, offload_fraction)
    device_type = torch.device(device).type
    vram = vram_breakdown(shape, workload, plan)
    p = lora_parameters(shape, plan.targets, plan.rank)
    ckpt, lora_file = checkpoint_bytes(shape, plan, config.steps)
    n_checkpoints = math.ceil(config.steps / config.checkpoint_every)
    # A new checkpoint is written before the oldest is pruned, so one more than kept is on disk for a moment.
    kept = n_checkpoints if config.keep_checkpoints == 0 else min(config.keep_checkpoints + 1, n_checkpoints)
    flops = flops_per_step(shape, workload, plan)
    compiled = compiled_blocks and device_type == "cuda"
    rate = throughput or device_throughput(device, compiled)
    per_block = COMPILED_BLOCK_OVERHEAD_S if compiled else BLOCK_OVERHEAD_S.get(device_type, BLOCK_OVERHEAD_S["cpu"])
    overhead = per_block * shape.n_blocks
    est = Estimate(
        bucket=workload.bucket, video_tokens=workload.video_tokens, lora_params=p, lora_bytes=4 * p,
        optimizer_bytes=optimizer_state_bytes(plan.optimizer, p), vram=vram, vram_available=vram_available,
        ram_bytes=ram_bytes(shape, workload, plan, device_type), ram_available=ram_available,
        disk_bytes=kept * (ckpt + lora_file) + lora_file,
        disk_free=None if output_dir is None else disk_free(output_dir),
        checkpoint_bytes=ckpt + lora_file, lora_file_bytes=lora_file, flops_per_step=flops,
        sec_per_step=config.gradient_accumulation * (flops / rate + overhead), steps=config.steps)
    if vram_available is not None and vram.peak * (1 + ALLOCATOR_SLACK) > vram_available:
        est.fixes = _fixes(shape, workload, plan, vram_available)
    return est


def _fixes(shape: ModelShape, work: Workload, plan: Plan, available: int) -> list[Fix]:
    budget = available / (1 + ALLOCATOR_SLACK)

    def peak(**changes) -> int:
        return vram_breakdown(shape, work, dataclasses.replace(plan, **changes)).peak

    now = peak()
    options: list[Fix] = []
    if not plan.checkpointing:
        options.append(Fix("turn on gradient checkpointing", peak(checkpointing=True), False))
    smaller = _smaller_bucket(shape, work, plan, budget)
    if smaller:
        options.append(smaller)
    for rank in (16, 8):
        if rank < plan.rank:
            options.append(Fix(f"lower rank to {rank}", peak(rank=rank), False))
            break
    if plan.optimizer != "adamw8bit":
        options.append(Fix("use the adamw8bit optimizer", peak(optimizer="adamw8bit"), False))
    if plan.offload_fraction < 1:
        # The share of weights that must leave the GPU for the rest to fit.
        weights = shape.weight_bytes * (1 - plan.offload_fraction)
        need = plan.offload_fraction + max(0.0, now - budget) / max(weights, 1) * (1 - plan.offload_fraction)
        fraction = min(1.0, need + 0.02)
        options.append(Fix(f"let ComfyUI stream {fraction:.0%} of the weights from system RAM (lowvram; "
                           f"{format_bytes(shape.weight_bytes * fraction)} more RAM)", peak(offload_fraction=fraction), False))
    if not plan.fp8:
        options.append(Fix("use the fp8 checkpoint", peak(fp8=True), False))
    options = [dataclasses.replace(f, fits=f.vram <= budget) for f in options if f.vram < now]
    return sorted(options, key=lambda f: f.vram)


def _smaller_bucket(shape: ModelShape, work: Workload, plan: Plan, budget: float) -> Fix | None:
    """The largest bucket of the same aspect ratio and frame count that fits; else the longest clip that does."""
    c, f, h, w = work.video_shape

    def try_shape(nf, nh, nw):
        candidate = dataclasses.replace(work, video_shape=(c, nf, nh, nw))
        need = vram_breakdown(shape, candidate, plan).peak
        return Fix(f"use bucket {candidate.bucket}", need, need <= budget)

    for nh in range(h - 1, 0, -1):
        nw = max(1, round(w * nh / h))
        fix = try_shape(f, nh, nw)
        if fix.fits:
            return fix
    for nf in range(f - 1, 0, -1):
        fix = try_shape(nf, h, w)
        if fix.fits:
            return fix
    return None


def refine_with_probe(est: Estimate, step_seconds: list[float], peak_bytes: int | None = None) -> Estimate:
    """Replace the guesses with what a few real steps measured: the median step time (the first step is usually
    slow: leave it out) and, on CUDA, ``torch.cuda.max_memory_allocated()`` over the probe. The fixes' memory
    figures are scaled by the same correction as the peak."""
    if not step_seconds:
        raise ValueError("refine_with_probe needs at least one measured step time")
    refined = dataclasses.replace(est, sec_per_step=statistics.median(step_seconds), measured=True)
    if peak_bytes is not None:
        ratio = peak_bytes / est.vram.peak
        refined.vram = dataclasses.replace(est.vram, peak=peak_bytes)
        refined.fixes = [dataclasses.replace(f, vram=round(f.vram * ratio)) for f in est.fixes]
    return refined
