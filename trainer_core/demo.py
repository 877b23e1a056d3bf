"""The main job on the embedded default, headless: the pack's whole pipeline end to end on CPU, and the proof that
the LoRA learned its concept rather than just lowering a loss.

    python -m trainer_core.demo [--out outputs/demo] [--steps 100]

Generates clips with captions (a small world of coloured balls, and a checkered "sks square" it has never seen),
loads and trims them, precomputes latents and text conditioning into the on-disk cache (a tiny random-weight LTX-2
VAE and a stand-in text encoder, since no weights can be downloaded), pre-trains a tiny LTX-2.3-shaped DiT on the
world so it is a base worth adapting, trains a LoRA on the concept with the real objective and loop, checks on
held-out clips whether it learned and bound the concept to the trigger, runs the strength sweep and writes a LoRA
file in ComfyUI's format. Re-running reuses the cache and the pre-trained base.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .data.concept_clips import TRIGGER
from .learning_bed import BUCKET, build_bed
from .output.lora_file import read_lora
from .training import learning_check
from .training.config import recipe_config
from .training.trainer import LoraTrainer

PRETRAIN_STEPS = 200


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/demo", help="folder for the dataset, cache, run and LoRA")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--pretrain-steps", type=int, default=PRETRAIN_STEPS, help="pre-training steps of the tiny base")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    say = _Stage()

    say("clips, dataset loader, frame trimmer, latent precompute; pre-training the tiny base")
    bed = build_bed(out, pretrain_steps=args.pretrain_steps, seed=args.seed)
    for role, cache in bed.caches.items():
        print(f"  {role:>9}: {len(cache)} clips at {BUCKET}, e.g. \"{cache.caption(0)}\"")
    print(f"  base: {args.pretrain_steps} steps of pre-training on the 'base' clips"
          + (" (reused from the last run)" if bed.base_reused else ""))

    say("LoRA trainer")
    data = bed.caches["train"]
    cfg = recipe_config("character", steps=args.steps, rank=8, alpha=16, learning_rate=1e-2, trigger=TRIGGER,
                        seed=args.seed, checkpoint_every=max(1, args.steps // 2), gradient_checkpointing=False,
                        mixed_precision="no")
    trainer = LoraTrainer(bed.denoiser, data, cfg, out / "run", on_event=_print_progress, buckets=[BUCKET])
    result = trainer.run()
    print(f"  loss {_mean(result.losses[:20]):.3f} -> {_mean(result.losses[-20:]):.3f} (mean of first / last 20 "
          "steps: this alone proves little)")

    say("did it learn? held-out clips, fixed noise seeds, base vs LoRA")
    check = learning_check.compare(bed.denoiser, result.lora, bed.cases("concept"), bed.cases("concept", strip=True),
                                   bed.cases("off_topic"))
    print(f"  {check.line()}")
    print(f"  binding {check.binding:.2f} (1 = the gain needs the trigger, 0 = it comes without it too); "
          f"bleed {check.bleed:+.1%} on off-topic clips")

    say("validation sweep (headless: same plan and scores as the node)")
    scores = bed.sweep(result.lora.effective_weights())
    print("  " + scores.report().replace("\n", "\n  "))

    say("save LoRA")
    path = out / "loras" / "ltx23_demo_lora.safetensors"
    saved = trainer.save_lora(path)
    lora = read_lora(path)
    print(f"  {path}\n  {saved['modules']} modules, rank {lora.rank}, {saved['bytes'] / 1024:.1f} KiB, "
          f"base {lora.metadata['base_model_version']}, trigger '{lora.metadata['trigger_word']}'")
    print(f"\ndone in {time.perf_counter() - started:.1f} s (pack {__version__})")
    return 0


class _Stage:
    def __init__(self):
        self.n = 0

    def __call__(self, name: str) -> None:
        self.n += 1
        print(f"[{self.n}/5] {name}", flush=True)


def _print_progress(event) -> None:
    if event.kind == "step" and (event.step % 25 == 0 or event.step == event.total_steps):
        print(f"  step {event.step}/{event.total_steps} loss {event.loss:.4f} (ema {event.loss_ema:.4f}) "
              f"lr {event.lr:.2e} {event.sec_per_step * 1000:.0f} ms/step", flush=True)
    elif event.kind == "checkpoint":
        print(f"  checkpoint {event.path}", flush=True)
    elif event.kind == "done" and event.message:
        print(f"  on its own samples: {event.message}", flush=True)


def _mean(values) -> float:
    return sum(values) / len(values) if values else math.nan


if __name__ == "__main__":
    sys.exit(main())
