"""``python -m <pack> train JOB``: the LoRA Trainer node's job outside the ComfyUI server (see
``comfy_adapters/headless.py``); under ``torchrun --nproc-per-node N -m <pack> train JOB`` on N GPUs."""

import argparse
import logging
import sys

from .comfy_adapters.headless import run_job
from .trainer_core.training.job import PARALLEL_MODES, JobError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run a training job exported by the LoRA Trainer node")
    train.add_argument("job", help="the job file (output/ltx23_trainer/runs/<run>/job.json)")
    train.add_argument("--parallel", choices=PARALLEL_MODES, default=None,
                       help="override the job's choice: ddp (each GPU holds the model), fsdp (the frozen weights are "
                            "sharded across GPUs) or auto (from the pre-flight estimate)")
    train.add_argument("--comfyui-root", default=None, help="ComfyUI folder (default: $COMFYUI_ROOT)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        lora = run_job(args.job, args.parallel, args.comfyui_root)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"LoRA: {lora}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
