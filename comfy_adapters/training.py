"""Training a LoRA through the model ComfyUI loaded: everything the LoRA Trainer node does between "settings and
data are ready" and "the run ended", kept apart from the node's schema so benchmarks run the same code.

Order matters: the estimate comes before any weight moves; ComfyUI then loads only as many weights as leave room
for training (the rest is streamed from system RAM per layer, which per-block checkpointing makes affordable); a
run that still cannot fit stops with fixes; the training forward is checked against ComfyUI's own block; and the
weights ComfyUI loaded under inference mode are used through zero-copy aliases for the run only (under dynamic VRAM,
where weights are materialised per use, through a weight wrapper on the training clone: ``dynamic_vram``).
"""

from __future__ import annotations

import dataclasses
import os
import time

import torch

from ..trainer_core.training import strategies
from ..trainer_core.training.config import TrainConfig
from ..trainer_core.training.estimate import (Estimate, device_memory_available, estimate, refine_with_probe,
                                              system_ram_available)
from ..trainer_core.training.estimate_model import largest_workload
from ..trainer_core.training.parallel import Parallel
from ..trainer_core.training.trainer import LoraTrainer, NonFiniteLoss, TrainResult
from ..trainer_core.cache.training_data import TrainingData
from .dynamic_vram import wrap_cast_weights
from .denoiser import ComfyLTXDenoiser, ParityReport, ensure_training_forward_matches, trainable_view
from .progress import TrainingProgress, preflight_fields


@dataclasses.dataclass
class ComfyTrainingRun:
    result: TrainResult
    trainer: LoraTrainer
    parity: ParityReport
    preflight: Estimate
    """The estimate, refined by the measured first steps."""
    streamed_fraction: float
    """Share of the base weights ComfyUI kept off the GPU and streamed per layer."""


class _Probe:
    """Forwards training events to the progress display and, after the first few real steps, replaces the
    estimate's guesses with measured step time and peak memory (the first step is left out: it includes one-time
    set-up such as kernel selection)."""

    STEPS = 5

    def __init__(self, preflight, progress: TrainingProgress, device: torch.device):
        self.preflight, self.progress, self.device = preflight, progress, device
        self.stamps: list[float] = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def __call__(self, event) -> None:
        if event.kind == "step" and len(self.stamps) < self.STEPS:
            self.stamps.append(time.perf_counter())
            if len(self.stamps) == self.STEPS:
                seconds = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
                peak = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
                self.preflight = refine_with_probe(self.preflight, seconds, peak)
                self.progress.estimate.update(preflight_fields(self.preflight))
        self.progress.on_event(event)


def train_on_loaded_model(model, data: TrainingData, config: TrainConfig, out_dir: str, *, node_id: str | None = None,
                          resume: bool = False, resume_from: str = "", buckets=(), parallel: Parallel | None = None,
                          events_path: str | None = None, dataset_fingerprint: str = "",
                          workflow_id: str | None = None) -> ComfyTrainingRun:
    """Trains on a clone of ``model`` (a ComfyUI ModelPatcher); the user's model is left exactly as it was.
    A cancel ends the run with a resumable checkpoint and then raises ComfyUI's interrupt. ``parallel`` and
    ``events_path`` are for headless runs (``headless.py``): the process group, and a file the panel can follow."""
    import comfy.model_management as mm

    device = mm.get_torch_device()
    patcher = model.clone()
    wrap_cast_weights(patcher)
    dm = patcher.model.diffusion_model
    denoiser = ComfyLTXDenoiser(dm, patcher.model.get_dtype_inference())
    ic = strategies.for_run(config, data).name == "ic"  # also refuses unusable pairs before any weight moves
    workload = largest_workload(data, config.batch_size, config.train_audio, with_reference=ic)
    needed = estimate(denoiser, config, workload, device=device, output_dir=out_dir)
    mm.load_models_gpu([patcher], memory_required=needed.vram.peak - needed.vram.weights)
    streamed = 1.0 - patcher.loaded_size() / max(1, patcher.model_size()) if device.type == "cuda" else 0.0
    # Decided once the weights are placed: streamed or cast weights keep the block eager.
    compiled = denoiser.compile_blocks(device) != "eager"
    preflight = estimate(denoiser, config, workload, device=device, output_dir=out_dir,
                         vram_available=device_memory_available(device), ram_available=system_ram_available(),
                         offload_fraction=streamed, compiled_blocks=compiled)
    preflight.raise_if_unfit()
    parity = ensure_training_forward_matches(dm, device, denoiser.dtype)
    progress = TrainingProgress(node_id, config.steps, workflow_id=workflow_id, events_path=events_path)
    probe = _Probe(preflight, progress, device)
    trainer = LoraTrainer(denoiser, data, config, out_dir, on_event=probe, should_stop=mm.processing_interrupted,
                          buckets=buckets, device=device, parallel=parallel, dataset_fingerprint=dataset_fingerprint)
    if resume:
        trainer.resume(os.path.join(out_dir, "checkpoints"), pick=resume_from)
    progress.begin(trainer, out_dir, preflight)
    try:
        with trainable_view(dm):
            result = trainer.run()
    except NonFiniteLoss as exc:
        raise RuntimeError(str(exc)) from None
    if result.stopped:
        # The checkpoint is on disk; now let ComfyUI mark the prompt as interrupted.
        mm.throw_exception_if_processing_interrupted()
    return ComfyTrainingRun(result, trainer, parity, probe.preflight, streamed)
