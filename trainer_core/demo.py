"""The main job on the embedded default, headless: the pack's whole pipeline end to end on CPU in about a minute.

    python -m trainer_core.demo [--out outputs/demo] [--steps 150]

Generates sample clips with captions, loads and lints them (trigger word inserted), trims them to valid LTX
buckets, precomputes latents and text conditioning into the on-disk cache (a tiny random-weight LTX-2 VAE and a
stand-in text encoder, since no weights can be downloaded), trains a LoRA on a tiny random-weight LTX-2.3-shaped
DiT with the real objective and loop, and writes a LoRA file in ComfyUI's format. Re-running reuses the cache.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .training.config import recipe_config
from .data.dataset import DatasetConfig, load_dataset
from .training.diffusers_denoiser import DiffusersLTX2Denoiser, build_ltx2_transformer
from .cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from .cache.latent_cache import LatentCache
from .output.lora_file import read_lora
from .cache.precompute import precompute
from .data.sample_clips import write_sample_dataset
from .training.trainer import LoraTrainer
from .data.trimmer import TrimConfig, trim_dataset

TRIGGER = "sks"
BUCKETS = "128x96x17;128x96x25"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/demo", help="folder for the dataset, cache, run and LoRA")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    say = _Stage()

    say("sample clips")
    clips = write_sample_dataset(out / "dataset")
    print(f"  {len(clips)} clips with .txt captions in {out / 'dataset'}")

    say("dataset loader")
    dataset = load_dataset(DatasetConfig(source=str(out / "dataset"), trigger_word=TRIGGER))
    summary = dataset.summary()
    print(f"  {summary['usable']} usable of {summary['items']} items; trigger '{TRIGGER}' inserted")

    say("frame trimmer")
    samples = trim_dataset(dataset, TrimConfig.from_text(BUCKETS))
    print(f"  {len(samples.samples)} samples: " + ", ".join(f"{b} x{n}" for b, n in samples.bucket_counts().items()))

    say("latent precompute")
    denoiser = DiffusersLTX2Denoiser(build_ltx2_transformer("ltx-2.3", "tiny", seed=args.seed), "ltx-2.3")
    report = precompute(samples.samples, str(out / "cache"),
                        video_encoder=DiffusersVideoEncoder(build_tiny_vae(seed=args.seed)),
                        text_conditioner=StandInTextConditioner(width=sum(denoiser.context_widths())))
    print("  " + report.summary().replace("\n", "\n  "))

    say("LoRA trainer")
    data = LatentCache(str(out / "cache"))
    cfg = recipe_config("character", steps=args.steps, rank=8, alpha=8, learning_rate=2e-3, trigger=TRIGGER,
                        seed=args.seed, checkpoint_every=50, gradient_checkpointing=False, mixed_precision="no")
    trainer = LoraTrainer(denoiser, data, cfg, out / "run", on_event=_print_progress,
                          buckets=[str(b) for b in samples.config.buckets])
    result = trainer.run()
    first, last = _mean(result.losses[:20]), _mean(result.losses[-20:])
    print(f"  loss {first:.3f} -> {last:.3f} (mean of first / last 20 steps)")

    say("save LoRA")
    path = out / "loras" / "ltx23_demo_lora.safetensors"
    saved = trainer.save_lora(path)
    lora = read_lora(path)
    print(f"  {path}\n  {saved['modules']} modules, rank {lora.rank}, {saved['bytes'] / 1024:.1f} KiB, "
          f"base {lora.metadata['base_model_version']}, trigger '{lora.metadata['trigger_word']}'")
    print(f"  load it in ComfyUI with LoraLoaderModelOnly; keys look like "
          f"diffusion_model.{next(iter(lora.weights))}.lora_A.weight")
    print(f"\ndone in {time.perf_counter() - started:.1f} s (pack {__version__})")
    return 0


class _Stage:
    def __init__(self):
        self.n = 0

    def __call__(self, name: str) -> None:
        self.n += 1
        print(f"[{self.n}/6] {name}", flush=True)


def _print_progress(event) -> None:
    if event.kind == "step" and (event.step % 25 == 0 or event.step == event.total_steps):
        print(f"  step {event.step}/{event.total_steps} loss {event.loss:.4f} (ema {event.loss_ema:.4f}) "
              f"lr {event.lr:.2e} {event.sec_per_step * 1000:.0f} ms/step", flush=True)
    elif event.kind == "checkpoint":
        print(f"  checkpoint {event.path}", flush=True)


def _mean(values) -> float:
    return sum(values) / len(values) if values else math.nan


if __name__ == "__main__":
    sys.exit(main())
