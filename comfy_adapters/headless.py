"""The graph's training job outside the ComfyUI server: ``python -m <pack> train JOB`` or, on several GPUs,
``torchrun --nproc-per-node N -m <pack> train JOB``.

ComfyUI is used as a library (``COMFYUI_ROOT``): its own loader reads the model file named in the job, so the model
class, dtype handling and the training forward (and its start-up self-check) are exactly the ones the LoRA Trainer
node uses. One process trains as the node does. Several processes split each step's micro-batches
(``trainer_core.training.parallel``): DDP-style (every GPU holds the whole model) when the pre-flight estimate says
the run fits one GPU, FSDP2 otherwise (the frozen blocks' weights are sharded across the GPUs and gathered per
block). Process 0 alone writes checkpoints, the LoRA and ``events.jsonl`` (which the panel can follow).
"""

from __future__ import annotations

import logging
import os
import sys

import torch

from ..trainer_core.cache.integrity import verify_cache
from ..trainer_core.cache.latent_cache import LatentCache
from ..trainer_core.training.estimate import estimate
from ..trainer_core.training.estimate_model import largest_workload
from ..trainer_core.training.job import JobError, TrainingJob, read_job
from ..trainer_core.training.parallel import Parallel, from_environment, shard_frozen_blocks
from ..trainer_core.training.trainer import LoraTrainer
from .progress import EVENTS_FILE

log = logging.getLogger("ltx23_trainer")


def import_comfyui(root: str | None, device: torch.device) -> None:
    """Makes ComfyUI importable as a library and fixes its device before its model code reads it."""
    root = root or os.environ.get("COMFYUI_ROOT")
    if not root or not os.path.isfile(os.path.join(root, "comfy", "model_management.py")):
        raise JobError(f"COMFYUI_ROOT={root!r} is not a ComfyUI folder: set COMFYUI_ROOT to the ComfyUI the graph "
                       "runs in (the folder with main.py), so the job trains the same model code")
    if root not in sys.path:
        sys.path.insert(0, root)
    from comfy.cli_args import args

    # Headless runs place the weights themselves; ComfyUI's dynamic VRAM would fight FSDP's placement.
    args.cpu = device.type == "cpu"
    args.disable_dynamic_vram = True
    import comfy.model_management  # noqa: F401  (reads the arguments above once, at import)


def load_model(job: TrainingJob):
    """The ModelPatcher ComfyUI's own loader makes from the job's file (Load Checkpoint or Load Diffusion Model)."""
    import comfy.sd

    if job.model_loader == "checkpoint":
        return comfy.sd.load_checkpoint_guess_config(job.model_path, output_vae=False, output_clip=False)[0]
    options = {}
    if job.weight_dtype not in ("default", ""):
        options["dtype"] = getattr(torch, job.weight_dtype.replace("fp8_e4m3fn", "float8_e4m3fn")
                                   .replace("fp8_e5m2", "float8_e5m2"))
    return comfy.sd.load_diffusion_model(job.model_path, model_options=options)


def choose_mode(requested: str, par: Parallel, denoiser, job: TrainingJob, data, device) -> str:
    if not par.distributed:
        return "single"
    if requested != "auto":
        return requested
    needed = estimate(denoiser, job.config, largest_workload(data, job.config.batch_size, job.config.train_audio),
                      device=device, output_dir=job.run_dir)
    if device.type != "cuda":
        return "ddp"
    free, _ = torch.cuda.mem_get_info(device)
    return "ddp" if needed.vram.peak <= free else "fsdp"


def run_job(path: str, parallel_mode: str | None = None, comfyui_root: str | None = None) -> str:
    """Runs the job and returns the LoRA file the run ended with."""
    job = read_job(path).validate()
    par = from_environment()
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    import_comfyui(comfyui_root, device)
    from .denoiser import ComfyLTXDenoiser, ensure_training_forward_matches
    from .training import train_on_loaded_model

    os.makedirs(job.run_dir, exist_ok=True)
    events = os.path.join(job.run_dir, EVENTS_FILE) if par.is_writer else None
    data = LatentCache(job.cache_dir)
    for note in data.notes() + verify_cache(data):
        if par.is_writer:
            log.warning("LTX-2.3 Trainer: %s", note)
    patcher = load_model(job)
    dm = patcher.model.diffusion_model
    denoiser = ComfyLTXDenoiser(dm, patcher.model.get_dtype_inference())
    mode = choose_mode(parallel_mode or job.parallel, par, denoiser, job, data, device)
    if par.is_writer:
        log.info("LTX-2.3 Trainer: job %s on %d process(es), mode %s", path, par.world_size, mode)
    if mode != "fsdp":
        run = train_on_loaded_model(patcher, data, job.config, job.run_dir, resume=job.resume, buckets=job.buckets,
                                    parallel=par, events_path=events)
        trainer = run.trainer
    else:
        ensure_training_forward_matches(dm, device, denoiser.dtype)
        denoiser.shard_blocks(lambda module: shard_frozen_blocks(module, device))
        dm.to(device)
        trainer = LoraTrainer(denoiser, data, job.config, job.run_dir, buckets=job.buckets, device=device,
                              parallel=par, on_event=_event_writer(events, job.config.steps))
        if job.resume:
            trainer.resume(os.path.join(job.run_dir, "checkpoints"))
        trainer.run()
    final = os.path.join(job.run_dir, "checkpoints", f"step_{trainer.step:06d}.safetensors")
    par.barrier()
    return final


def _event_writer(path: str | None, steps: int):
    if path is None:
        return None
    from .progress import TrainingProgress

    return TrainingProgress(None, steps, events_path=path).on_event
