"""Training strategies, one file each; ``for_run`` picks the one a run uses."""

from __future__ import annotations

from ..config import TrainConfig
from ...cache.training_data import TrainingData
from . import audio_video
from .audio_video import AudioVideo
from .base import StepBatch, StepContext, TrainingStrategy
from .ic import ICReference
from .text_to_video import TextToVideo

__all__ = ["StepBatch", "StepContext", "TrainingStrategy", "for_run", "select_data"]


def _audio_video(cfg: TrainConfig) -> bool:
    return cfg.strategy == "audio_video" or (cfg.strategy == "auto" and cfg.train_audio)


def for_run(cfg: TrainConfig, data: TrainingData) -> TrainingStrategy:
    """``cfg.strategy`` "auto" trains IC when every sample has reference latents (a partly paired dataset is
    refused rather than silently trained as text-to-video), audio-video when ``train_audio`` is on, and
    text-to-video otherwise."""
    name = cfg.strategy
    if name == "auto":
        with_ref = sum(data.group_key(i)[3] is not None for i in range(len(data)))
        if 0 < with_ref < len(data):
            raise ValueError(f"{with_ref} of {len(data)} samples have a reference video: IC-LoRA training needs one "
                             "for every sample. Add the missing references, or set strategy to text_to_video to "
                             "ignore them")
        name = "ic" if with_ref else ("audio_video" if cfg.train_audio else "text_to_video")
    if cfg.train_audio and name == "ic":
        raise ValueError("IC-LoRA training is video-only here: turn train_audio off, or set strategy to "
                         "text_to_video")
    strategy = {"ic": ICReference, "audio_video": AudioVideo}.get(name, TextToVideo)()
    strategy.check(data)
    return strategy


def select_data(cfg: TrainConfig, data: TrainingData) -> tuple[TrainingData, list[int]]:
    """The samples the run's strategy trains on, and the indices of the ones it leaves out."""
    return audio_video.select_data(cfg, data) if _audio_video(cfg) else (data, [])
