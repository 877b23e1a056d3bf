"""Pre-flight estimate of a LoRA run: GPU memory, system RAM, disk and time, before the first step.

Everything is computed from the real model and data: weight bytes and dtypes from ``denoiser.base_parameters()``,
block structure and LoRA shapes from ``denoiser.lora_targets()`` (``transformer_blocks.N.<sub>.<proj>``, the module
paths ComfyUI, ltx-core and diffusers share), token counts from the largest bucket in the training data. A
short probe of a few real steps then replaces the guesses (``estimate.refine_with_probe``). When the run will not fit, the
estimate says so before any weight moves, with the fixes that would make it fit and what each one would need.

GPU memory model (bytes at the peak, what ``torch.cuda.max_memory_allocated`` reports)::

    peak = resident weights + LoRA fp32 masters (4 B/param)
           + max(backward: optimizer moments + activations,
                 optimizer step: gradients (4 B/param) + moments + AdamW's foreach temporary (4 B/param))

The backward peak comes right after the forward, before the first LoRA gradient exists (the saved activations only
shrink from there while the gradients grow more slowly), so gradients are not counted in it. The moments are
AdamW's exp_avg and exp_avg_sq (8 B/param) or 8-bit AdamW's (~2 B/param plus block scales). Small adapters on
large token counts peak in the backward; rank 128 on 960x544x49 already peaks in the optimizer step.

Activations. Under bf16 autocast every saved tensor is 2 bytes per element (fp32 models without autocast: 4). For
one transformer block, per token of each stream (video, audio; text for the prompt cross-attention keys/values):

* the frozen block saves ``KAPPA`` elements per output feature of the linear layers that run on that stream, for
  its norms, modulations, RoPE, attention and GELU (fitted: it stands for RMSNorm/RoPE fp32 copies, the
  modulation products and the AdaLN rows they keep alive, q/k/v/out held by fused attention, the GELU input);
* the prompt cross-attention holds the text keys and values (one element per output feature);
* each LoRA target saves its input (for dA) and its rank-wide ``A x`` (for dB); projections that read one tensor
  (q/k/v/gate of a self-attention) save it once. This is why adding the FFN targets costs more than their size:
  the FFN's second projection reads the 4x-wide GELU output, which the frozen FFN never had to keep.

Without checkpointing every block keeps all of that, the last block's backward adds ``RHO - 1`` of one block,
``MU_SHARED`` video-width vectors per video token live outside the blocks, and autocast's bf16 copies of the
masters are saved by every adapter (2 B/param). With per-block checkpointing each block keeps only its input
hidden states; the tensors every block takes as inputs stay alive too (``MU_BLOCK_INPUTS`` more vectors per video
token), and one block's backward recomputes and holds ``RHO`` times its saved activations.

Calibration: the full-size LTX-2.3 DiT (48 blocks, 18.99 B params, bf16) under the pack trainer on an H200,
torch 2.11, one sample, 1024 context tokens, video-only: 13 runs with per-block checkpointing on and off, 1792 to
14080 video tokens, 12 and 48 blocks, rank 32 and 128, attention and attention+FFN targets (bench/RESULTS.md,
"Pre-flight estimate vs measured", has the table). ``KAPPA``, ``RHO`` and ``MU_SHARED`` are a least-squares fit
of the activation bytes (``MU_BLOCK_INPUTS`` is structure, not fitted; the intercept came out at 14 MiB and is
dropped). Residuals: peaks within 1.2% of every run, what training adds to the weights within 3%. Outside what
was measured: without a fused SDPA (CPU, old GPUs) attention materialises its N x N scores and the estimate is
low until the probe corrects it; audio streams, 8-bit AdamW, fp8 and streamed weights follow the same byte counts
but were not measured.

Time: FLOPs per step from the same shapes (2 per multiply-add of every linear on its stream's tokens, 4·Nq·Nkv·d
per attention; a frozen base needs only input gradients, so the backward costs one forward of the linears and two
of attention, and checkpointing recomputes one forward), divided by an achieved throughput, plus a per-block
overhead. The H200 fit gives ``ACHIEVED_FRACTION`` of the dense bf16 datasheet peak (399 TFLOP/s) and
``BLOCK_OVERHEAD_S`` per block (host-side launches that the GPU does not hide; they dominate small buckets), within
8% of all 13 runs. Other GPUs scale by their datasheet peak, CPUs by a quick matmul measurement; the probe
replaces the guess in every case.

RAM and disk are byte counts of what the trainer actually holds and writes: checkpoint files are a ``.ckpt``
(fp32 LoRA, optimizer moments, RNG, loss history) and a bf16 ComfyUI LoRA, ``keep_checkpoints + 1`` of them at
once (the newest is written before the oldest is pruned), plus the final LoRA.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time

import torch

from .config import TrainConfig
from .denoiser import Denoiser
from .lora import select_targets
from ..cache.training_data import TrainingData

GiB = 2 ** 30

# Fitted on the H200 runs described in the module docstring.
KAPPA = 3.27
"""Saved elements per output feature of each linear on a stream, per token (frozen block, fused attention)."""
RHO = 1.014
"""The backward of one block holds this many times that block's saved activations (they plus its gradients)."""
MU_SHARED = 6.0
"""Video-width vectors per video token alive outside the blocks in either mode (RoPE tables, the output layer)."""
MU_BLOCK_INPUTS = 14.0
"""Video-width vectors per video token that every checkpointed block takes as inputs and so stay alive: the
per-token AdaLN (9 x dim on LTX-2.3, 6 on 2.0, so 2.0 is over-estimated by 3) and the cross-modal scale/shift
and gate (5 x dim). Not fitted: it is the model's structure."""
ALLOCATOR_SLACK = 0.05
"""PyTorch reserved at most 3% above the allocated peak in the calibration runs; keep 5% free for it."""
ACHIEVED_FRACTION = 0.40
"""Achieved share of the dense bf16 datasheet peak in a training step (H200 fit: GEMMs near the ceiling,
unfused pointwise work and launches are the rest)."""
BLOCK_OVERHEAD_S = {"cuda": 0.0034, "cpu": 0.12}
"""Seconds per transformer block per step that FLOPs do not account for: unhidden kernel launches on a GPU (fitted
on the H200), per-op framework overhead on a CPU (the tiny model on 2 cores, where it is nearly the whole step)."""
COMPILED_ACHIEVED_FRACTION, COMPILED_BLOCK_OVERHEAD_S = 0.615, 0.0048
"""The same two with the training block compiled (comfy_adapters/block_compile.py): fused pointwise work, and the
host time per block that is still not hidden (fitted on the H100 node-path runs of 2026-12-08 at 960x544x49 and
512x512x49, bench/RESULTS.md)."""
# Datasheet dense bf16 (fp32-accumulate) peaks; anything unknown is taken as H100-class until the probe runs.
DATASHEET_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12,
                        "RTX 5090": 209e12, "RTX 4090": 165e12}
_DEFAULT_PEAK = DATASHEET_BF16_FLOPS["H100"]
# Bytes a checkpoint adds beyond its tensor data, fitted on the tiny model's files (torch 2.13): per LoRA tensor
# (its entry and its optimizer state's four zip records with keys and alignment), per logged loss, and the rest
# (RNG state, settings, zip directory); for the LoRA file, per safetensors header entry and the metadata.
_CKPT_PER_TENSOR = 1_216
_CKPT_PER_LOSS = 9
_CKPT_FIXED = 6_600
_SAFETENSORS_PER_ENTRY = 70
_SAFETENSORS_FIXED = 600
# Which token stream each projection of a block runs on: ``(sub-module, projection role) -> stream``. Roles:
# "q" (query side and the output projection), "kv" (key/value side). Self-attention keys come from the queries.
_STREAMS = {
    "attn1": ("video", "video"), "attn2": ("video", "text"), "ff": ("video", None),
    "audio_attn1": ("audio", "audio"), "audio_attn2": ("audio", "text"), "audio_ff": ("audio", None),
    "audio_to_video_attn": ("video", "audio"), "video_to_audio_attn": ("audio", "video"),
}
_CROSS_MODAL = ("audio_to_video_attn", "video_to_audio_attn")
_BLOCK_NAME = re.compile(r"transformer_blocks\.(\d+)\.([^.]+)\.(.+)")


@dataclasses.dataclass(frozen=True)
class Linear:
    block: int
    sub: str
    """``attn1``, ``ff``, ``audio_to_video_attn``..."""
    proj: str
    """``to_q``, ``to_out.0``, ``net.0.proj``..."""
    in_features: int
    out_features: int

    @property
    def name(self) -> str:
        return f"transformer_blocks.{self.block}.{self.sub}.{self.proj}"

    @property
    def is_kv(self) -> bool:
        return self.proj in ("to_k", "to_v")

    def stream(self) -> str | None:
        query, kv = _STREAMS.get(self.sub, (None, None))
        return kv if self.is_kv else query

    def input_key(self) -> tuple:
        """Projections that read the same tensor share a key (q/k/v/gate of a self-attention, q/gate of a cross)."""
        if self.proj.startswith("to_out") or self.proj == "net.2":
            return self.block, self.sub, self.proj
        query, kv = _STREAMS.get(self.sub, (None, None))
        side = "q" if not self.is_kv or kv == query else "kv"
        return self.block, self.sub, side


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about the DiT, read from the live (or meta-device) model."""

    linears: tuple[Linear, ...]
    n_blocks: int
    video_dim: int
    audio_dim: int
    weight_bytes: int
    fp8_saving: int
    """Bytes an fp8 checkpoint saves: the blocks' linear weights stored in one byte per element."""
    activation_size: int
    """Bytes per activation element without autocast (the base weights' dtype)."""

    @classmethod
    def of(cls, denoiser: Denoiser) -> "ModelShape":
        linears = []
        for name, m in denoiser.lora_targets().items():
            match = _BLOCK_NAME.fullmatch(name)
            if match:
                linears.append(Linear(int(match[1]), match[2], match[3], m.in_features, m.out_features))
        if not linears:
            raise ValueError("the model exposes no transformer_blocks.N.* linear layers; cannot estimate memory")
        params = denoiser.base_parameters()
        weight_bytes = sum(p.numel() * p.element_size() for p in params)
        block_matrices = {id(m.weight) for m in denoiser.lora_targets().values()}
        fp8_saving = sum(p.numel() * (p.element_size() - 1) for p in params if id(p) in block_matrices)
        dtypes: dict[torch.dtype, int] = {}
        for p in params:
            dtypes[p.dtype] = dtypes.get(p.dtype, 0) + p.numel()
        main_dtype = max(dtypes, key=dtypes.get)

        def width(sub):
            return next((lin.in_features for lin in linears if lin.sub == sub and lin.proj == "to_q"), 0)

        return cls(linears=tuple(linears), n_blocks=1 + max(lin.block for lin in linears), video_dim=width("attn1"),
                   audio_dim=width("audio_attn1"), weight_bytes=weight_bytes, fp8_saving=fp8_saving,
                   activation_size=torch.empty((), dtype=main_dtype, device="meta").element_size())

    def active(self, train_audio: bool) -> list[Linear]:
        """The linears a step runs: a video-only run switches the cross-modal attentions off and its audio stream
        carries no real tokens."""
        return [lin for lin in self.linears
                if train_audio or (lin.sub not in _CROSS_MODAL and _STREAMS.get(lin.sub, ("",))[0] == "video")]


@dataclasses.dataclass(frozen=True)
class Workload:
    """The largest step of the run: what sets the activation peak and the step time."""

    video_shape: tuple[int, ...]
    """``[128, F', H', W']`` of the largest bucket."""
    context_tokens: int
    context_width: int
    audio_tokens: int = 0
    """Audio latent steps T when the run trains audio, else 0."""
    batch_size: int = 1
    reference_tokens: int = 0
    """IC-LoRA reference tokens per sample: they run through every video layer alongside the target's."""

    @property
    def video_tokens(self) -> int:
        return math.prod(self.video_shape[1:]) + self.reference_tokens

    def tokens(self, stream: str | None) -> int:
        per_sample = {"video": self.video_tokens, "audio": self.audio_tokens, "text": self.context_tokens}
        return self.batch_size * per_sample.get(stream, 0)

    @property
    def bucket(self) -> str:
        """The pixel bucket ``WxHxF`` that produces this latent (32x spatial, 8x temporal compression)."""
        f, h, w = self.video_shape[1:]
        return f"{w * 32}x{h * 32}x{(f - 1) * 8 + 1}"


def largest_workload(data: TrainingData, batch_size: int = 1, train_audio: bool = False,
                     with_reference: bool = False) -> Workload:
    """Scan ``data.group_key(i)`` (shapes from the manifest; no tensor is loaded) for the most tokens per sample.
    ``with_reference``: the run trains IC, so each sample's reference tokens count too."""
    best = None
    for i in range(len(data)):
        video, context, audio, reference = data.group_key(i)[:4]
        ref_tokens = math.prod(reference[1:]) if with_reference and reference else 0
        tokens = math.prod(video[1:]) + ref_tokens + (audio[1] if train_audio and audio else 0)
        if best is None or tokens > best[0]:
            best = tokens, video, context, audio, ref_tokens
    if best is None:
        raise ValueError("the training data is empty: precompute at least one sample first")
    _, video, context, audio, ref_tokens = best
    return Workload(video_shape=tuple(video), context_tokens=context[0], context_width=context[1],
                    audio_tokens=audio[1] if train_audio and audio else 0, batch_size=batch_size,
                    reference_tokens=ref_tokens)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The settings that change the estimate; the fixes are variations of it."""

    rank: int
    targets: tuple[str, ...]
    checkpointing: bool
    optimizer: str
    autocast: bool
    train_audio: bool
    offload_fraction: float = 0.0
    """Share of the base weights ComfyUI streams from system RAM instead of keeping on the GPU."""
    fp8: bool = False
    """Block weights stored in one byte (an fp8 checkpoint)."""

    @classmethod
    def of(cls, config: TrainConfig, offload_fraction: float = 0.0) -> "Plan":
        return cls(rank=config.rank, targets=tuple(config.targets), checkpointing=config.gradient_checkpointing,
                   optimizer=config.optimizer, autocast=config.mixed_precision == "bf16",
                   train_audio=config.train_audio, offload_fraction=offload_fraction)


@dataclasses.dataclass(frozen=True)
class Vram:
    """GPU memory by part (bytes) and the peak they add up to."""

    weights: int
    """Base weights resident on the GPU."""
    lora: int
    """fp32 masters."""
    optimizer: int
    """Optimizer moments."""
    activations: int
    """Saved for the backward, at its start."""
    peak: int
    peak_in: str
    """"backward" or "optimizer step": where the peak falls."""


def lora_parameters(shape: ModelShape, targets, rank: int) -> int:
    chosen = _targets(shape, targets)
    return rank * sum(lin.in_features + lin.out_features for lin in chosen)


def _targets(shape: ModelShape, patterns) -> list[Linear]:
    by_name = {lin.name: lin for lin in shape.linears}
    # select_targets only reads the names and raises the same error the trainer would for a bad pattern.
    return [by_name[n] for n in select_targets(dict.fromkeys(by_name), patterns)]


def optimizer_state_bytes(optimizer: str, lora_params: int) -> int:
    if optimizer == "adamw8bit":
        # bitsandbytes: two uint8 moments plus one fp32 absmax per 256-element block for each.
        return 2 * lora_params + 2 * 4 * math.ceil(lora_params / 256)
    return 8 * lora_params


def block_activations(shape: ModelShape, work: Workload, plan: Plan) -> dict[int, float]:
    """Saved activation elements of each block's forward (see the module docstring), per block index."""
    targets = {lin.name for lin in _targets(shape, plan.targets)}
    saved: dict[int, float] = {}
    inputs_seen = set()
    for lin in shape.active(plan.train_audio):
        n = work.tokens(lin.stream())
        # The text side carries no gradient: attention holds its keys/values and nothing else of it.
        per_out = 1.0 if lin.stream() == "text" and lin.name not in targets else KAPPA
        elems = per_out * lin.out_features * n
        if lin.name in targets:
            elems += plan.rank * n
            if lin.input_key() not in inputs_seen:
                inputs_seen.add(lin.input_key())
                elems += lin.in_features * n
        saved[lin.block] = saved.get(lin.block, 0.0) + elems
    return saved


def vram_breakdown(shape: ModelShape, work: Workload, plan: Plan) -> Vram:
    elem = 2 if plan.autocast else shape.activation_size
    p = lora_parameters(shape, plan.targets, plan.rank)
    weights = shape.weight_bytes - (shape.fp8_saving if plan.fp8 else 0)
    weights = round(weights * (1 - plan.offload_fraction))
    saved = block_activations(shape, work, plan)
    video = work.tokens("video") * shape.video_dim
    if plan.checkpointing:
        hidden = video + (work.tokens("audio") * shape.audio_dim if plan.train_audio else 0)
        acts = shape.n_blocks * hidden + (MU_SHARED + MU_BLOCK_INPUTS) * video + RHO * max(saved.values())
        cast = 0
    else:
        acts = sum(saved.values()) + (RHO - 1) * max(saved.values()) + MU_SHARED * video
        # Autocast's bf16 copies of the fp32 masters are saved by every adapter's matmul; a checkpointed block
        # recomputes its own and frees them.
        cast = 2 * p if plan.autocast else 0
    activations = round(acts * elem) + cast
    lora = 4 * p
    moments = optimizer_state_bytes(plan.optimizer, p)
    foreach_temp = 0 if plan.optimizer == "adamw8bit" else 4 * p
    backward = moments + activations
    step = 4 * p + moments + foreach_temp
    return Vram(weights=weights, lora=lora, optimizer=moments, activations=activations,
                peak=weights + lora + max(backward, step), peak_in="backward" if backward >= step else "optimizer step")


def flops_per_step(shape: ModelShape, work: Workload, plan: Plan) -> float:
    linear = attention = 0.0
    active = shape.active(plan.train_audio)
    for lin in active:
        linear += 2.0 * lin.in_features * lin.out_features * work.tokens(lin.stream())
    for lin in active:
        if lin.proj == "to_q":
            _, kv = _STREAMS[lin.sub]
            # Per sample: attention never crosses samples of a batch.
            nq = work.tokens(lin.stream()) / work.batch_size
            attention += 4.0 * nq * work.tokens(kv) * lin.out_features
    forwards = 1 + (1 if plan.checkpointing else 0)
    return linear * (forwards + 1) + attention * (forwards + 2)


def device_throughput(device: torch.device | str, compiled: bool = False) -> float:
    """Achieved FLOP/s of a training step on this device: a calibrated share of the datasheet peak on a GPU (larger
    with the compiled block), a quick fp32 matmul measurement on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else ""
        peak = next((v for k, v in DATASHEET_BF16_FLOPS.items() if k in name), _DEFAULT_PEAK)
        return (COMPILED_ACHIEVED_FRACTION if compiled else ACHIEVED_FRACTION) * peak
    a = torch.randn(512, 512)
    a @ a
    started = time.perf_counter()
    for _ in range(4):
        a @ a
    return ACHIEVED_FRACTION * 4 * 2 * 512 ** 3 / (time.perf_counter() - started)


def checkpoint_bytes(shape: ModelShape, plan: Plan, steps: int) -> tuple[int, int]:
    """Size of one ``.ckpt`` and of one bf16 LoRA file."""
    chosen = _targets(shape, plan.targets)
    p = lora_parameters(shape, plan.targets, plan.rank)
    tensors = 2 * len(chosen)
    ckpt = (4 * p + optimizer_state_bytes(plan.optimizer, p) + tensors * _CKPT_PER_TENSOR + steps * _CKPT_PER_LOSS
            + _CKPT_FIXED)
    # bf16 A/B and an fp32 alpha per module; the JSON header names all three.
    header = sum(3 * (len("diffusion_model.") + len(lin.name) + _SAFETENSORS_PER_ENTRY) for lin in chosen)
    lora_file = 2 * p + 4 * len(chosen) + header + _SAFETENSORS_FIXED
    return ckpt, lora_file


def ram_bytes(shape: ModelShape, work: Workload, plan: Plan, device_type: str) -> int:
    """Host memory the run adds: offloaded (or, on a CPU, all) weights and training state, the batch in flight
    (fp32 latents, noise and noisy input, context and the empty context), and a checkpoint being written."""
    batch = 4 * (3 * 128 * work.tokens("video") + 2 * work.batch_size * work.context_tokens * work.context_width)
    ckpt, lora_file = checkpoint_bytes(shape, plan, 0)
    ram = batch + ckpt + lora_file + round(shape.weight_bytes * plan.offload_fraction)
    if device_type != "cuda":
        ram += vram_breakdown(shape, work, plan).peak
    return ram
