"""A training job as a file: everything the graph's LoRA Trainer decided, so the same run can happen outside ComfyUI
(``python -m <pack> train JOB``, or under ``torchrun`` on several GPUs) and produce an interchangeable LoRA.

The job names the model file and the loader ComfyUI used for it (so the headless run builds the very model class
the graph trains), the latent cache folder, the run folder (checkpoints, events, the LoRA) and the full training
settings. Paths are absolute: a job is made and run on one machine, or on machines that share the paths.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from pathlib import Path

from ..atomic import write_text_atomic
from .config import TrainConfig

FORMAT = "ltx23-trainer-job/1"
LOADERS = ("checkpoint", "diffusion_model")
PARALLEL_MODES = ("auto", "ddp", "fsdp")


class JobError(ValueError):
    pass


@dataclasses.dataclass
class TrainingJob:
    model_path: str
    model_loader: str
    """"checkpoint" (Load Checkpoint) or "diffusion_model" (Load Diffusion Model)."""
    cache_dir: str
    run_dir: str
    config: TrainConfig
    weight_dtype: str = "default"
    """The diffusion-model loader's weight dtype (default, fp8_e4m3fn, ...), as chosen in the graph."""
    buckets: dict[str, int] = dataclasses.field(default_factory=dict)
    resume: bool = False
    parallel: str = "auto"
    """auto: DDP when the model and training fit one GPU (pre-flight estimate), FSDP2 otherwise."""

    def validate(self) -> "TrainingJob":
        if self.model_loader not in LOADERS:
            raise JobError(f"model_loader {self.model_loader!r} is not one of {', '.join(LOADERS)}")
        if self.parallel not in PARALLEL_MODES:
            raise JobError(f"parallel {self.parallel!r} is not one of {', '.join(PARALLEL_MODES)}")
        for label, path, check in (("model file", self.model_path, os.path.isfile),
                                   ("latent cache folder", self.cache_dir, os.path.isdir)):
            if not check(path):
                raise JobError(f"the job's {label} {path} does not exist on this machine: run the job where the "
                               "graph made it, or edit the path in the job file")
        self.config.validate()
        return self

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["config"]["targets"] = list(self.config.targets)
        return json.dumps({"format": FORMAT, **data}, indent=2)


def write_job(job: TrainingJob, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, job.to_json() + "\n")
    return path


def read_job(path: str | os.PathLike) -> TrainingJob:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"job file {path} does not exist; export it from the LoRA Trainer node "
                       "(run_on: export job)") from None
    except (OSError, ValueError) as exc:
        raise JobError(f"job file {path} is not readable JSON ({exc}); export it again from the LoRA Trainer node") \
            from None
    if data.pop("format", None) != FORMAT:
        raise JobError(f"{path} is not a {FORMAT} job file; export it again from the LoRA Trainer node")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = data.pop("config", {})
    unknown = set(settings) - fields
    if unknown:
        raise JobError(f"{path} has training settings this pack does not know: {sorted(unknown)}; update the pack "
                       "or export the job again")
    settings["targets"] = tuple(settings.get("targets", ()))
    try:
        return TrainingJob(config=TrainConfig(**settings), **data)
    except TypeError as exc:
        raise JobError(f"{path} is not a complete job file ({exc}); export it again") from None


def command(job_path: str | os.PathLike, pack_dir: str | os.PathLike, comfyui_root: str | os.PathLike,
            gpus: int = 1) -> str:
    """The shell command that runs the job: from ComfyUI's ``custom_nodes`` folder, so ``-m <pack>`` finds the
    pack as ComfyUI does, with ComfyUI's own Python."""
    pack_dir = Path(pack_dir)
    launcher = (f"torchrun --standalone --nproc-per-node {gpus} -m {pack_dir.name}" if gpus > 1
                else f"python -m {pack_dir.name}")
    return (f"cd {shlex.quote(str(pack_dir.parent))} && COMFYUI_ROOT={shlex.quote(str(comfyui_root))} "
            f"{launcher} train {shlex.quote(str(job_path))}")
