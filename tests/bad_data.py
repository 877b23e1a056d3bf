"""A small dataset with the two faults users hit most (issue 11): a caption far longer than the text encoder's
window and a clip whose packets do not decode although its header reads fine; and the whole pipeline over it on
the tiny model (Dataset Loader, Frame Trimmer, Latent Precompute, cache check, LoRA Trainer with the default
recipe). Used by tests/test_bad_data_run.py (a short run) and bench/bad_data_run.py (the full 1500 steps)."""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

from media_factory import write_clip

from trainer_core.cache import integrity
from trainer_core.cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from trainer_core.cache.latent_cache import LatentCache
from trainer_core.cache.precompute import precompute
from trainer_core.data.dataset import DatasetConfig, load_dataset
from trainer_core.data.trimmer import TrimConfig, trim_dataset
from trainer_core.training.config import recipe_config
from trainer_core.training.diffusers_denoiser import DiffusersLTX2Denoiser, build_ltx2_transformer
from trainer_core.training.trainer import LoraTrainer

WINDOW = 128
"""Rows of every cached context (the stand-in's "1024 tokens")."""
LONG_WORDS = 1200


def write_bad_dataset(root: Path) -> None:
    for i in range(3):
        write_clip(root / f"clip{i}.mp4", frames=17 + 8 * i, width=64, height=64)
        (root / f"clip{i}.txt").write_text(f"sks a ball rolling, take {i}")
    write_clip(root / "long.mp4", frames=20, width=64, height=64)
    (root / "long.txt").write_text(" ".join(f"detail{k}" for k in range(LONG_WORDS)))
    broken = write_clip(root / "broken.mp4", frames=48, width=96, height=64, faststart=True, gop=8)
    data = bytearray(broken.read_bytes())
    rng = random.Random(0)
    start = int(len(data) * 0.6)
    for k in range(start, start + len(data) // 5):
        data[k] = rng.randrange(256)
    broken.write_bytes(bytes(data))
    (root / "broken.txt").write_text("sks a ball, damaged file")


@dataclasses.dataclass
class BadDataRun:
    loader_excluded: list[str]
    precompute_summary: str
    failed: list[str]
    truncated: list[str]
    trainer_notes: list[str]
    samples_trained: int
    steps_done: int
    losses: list[float]
    checkpoints: list[str]
    seconds: float


def run_bad_dataset(out: Path, steps: int = 1500, **overrides) -> BadDataRun:
    """The default recipe (only ``steps`` and ``overrides`` change) over ``write_bad_dataset``."""
    started = time.perf_counter()
    write_bad_dataset(out / "dataset")
    dataset = load_dataset(DatasetConfig(str(out / "dataset")))
    samples = trim_dataset(dataset, TrimConfig.from_text("64x64x17"))
    denoiser = DiffusersLTX2Denoiser(build_ltx2_transformer("ltx-2.3", "tiny", seed=0), "ltx-2.3")
    report = precompute(samples.samples, str(out / "cache"),
                        video_encoder=DiffusersVideoEncoder(build_tiny_vae(seed=0), tiling="never"),
                        text_conditioner=StandInTextConditioner(width=sum(denoiser.context_widths()),
                                                                length=WINDOW, grow=True))
    data = LatentCache(str(out / "cache"))
    notes = data.notes() + integrity.verify_cache(data)
    cfg = recipe_config("character", steps=steps, **overrides)
    trainer = LoraTrainer(denoiser, data, cfg, out / "run")
    result = trainer.run()
    return BadDataRun(
        loader_excluded=[i.item_id for i in dataset.excluded_items()], precompute_summary=report.summary(),
        failed=[f.line() for f in report.failed], truncated=report.truncated, trainer_notes=notes,
        samples_trained=len(data), steps_done=result.steps_done, losses=result.losses,
        checkpoints=[Path(c).name for c in result.checkpoints], seconds=time.perf_counter() - started)
