"""Turning the LoRA Trainer node's settings into a job file for ``python -m <pack> train`` / ``torchrun``."""

from __future__ import annotations

import os

import torch

from ..trainer_core.training.config import TrainConfig
from ..trainer_core.training.job import JobError, TrainingJob, command, write_job

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOADERS = {"load_checkpoint_guess_config_model_only": "checkpoint", "load_diffusion_model": "diffusion_model"}
_DTYPES = {torch.float8_e4m3fn: "fp8_e4m3fn", torch.float8_e5m2: "fp8_e5m2", torch.bfloat16: "bfloat16",
           torch.float16: "float16", torch.float32: "float32"}


def model_source(model) -> tuple[str, str, str]:
    """(file path, loader, weight dtype) of a MODEL from Load Checkpoint or Load Diffusion Model, as ComfyUI's
    loaders record it for reloading."""
    init = getattr(model, "cached_patcher_init", None)
    loader = _LOADERS.get(getattr(init[0], "__name__", "")) if init else None
    if loader is None:
        raise JobError("this MODEL was not loaded from a file by Load Checkpoint or Load Diffusion Model, so a job "
                       "cannot name it: load the LTX-2.3 model with one of those loaders to export a job")
    path = init[1][0]
    dtype = "default"
    if loader == "diffusion_model" and len(init[1]) > 1 and isinstance(init[1][1], dict):
        dtype = _DTYPES.get(init[1][1].get("dtype"), "default")
    return os.path.abspath(path), loader, dtype


def export_job(model, cache_path: str, config: TrainConfig, run_dir: str, *, buckets: dict, resume: bool,
               gpus: int) -> tuple[str, str]:
    """Writes ``<run_dir>/job.json``; returns its path and the command that runs it on ``gpus`` GPUs."""
    import folder_paths

    path, loader, dtype = model_source(model)
    job = TrainingJob(model_path=path, model_loader=loader, cache_dir=os.path.abspath(cache_path), run_dir=run_dir,
                      config=config, weight_dtype=dtype, buckets=dict(buckets), resume=resume)
    job_path = str(write_job(job, os.path.join(run_dir, "job.json")))
    comfyui_root = os.path.dirname(os.path.abspath(folder_paths.__file__))
    return job_path, command(job_path, PACK_DIR, comfyui_root, gpus)
