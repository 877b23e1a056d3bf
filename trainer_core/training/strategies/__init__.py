"""Training strategies, one file each; ``for_run`` picks the one a run uses."""

from __future__ import annotations

from ..config import TrainConfig
from ...cache.training_data import TrainingData
from . import audio_video
from .audio_video import AudioVideo
from .base import StepBatch, StepContext, TrainingStrategy
from .text_to_video import TextToVideo

__all__ = ["StepBatch", "StepContext", "TrainingStrategy", "for_run", "select_data"]


def _audio_video(cfg: TrainConfig) -> bool:
    return cfg.strategy == "audio_video" or (cfg.strategy == "auto" and cfg.train_audio)


def for_run(cfg: TrainConfig, data: TrainingData) -> TrainingStrategy:
    strategy = AudioVideo() if _audio_video(cfg) else TextToVideo()
    strategy.check(data)
    return strategy


def select_data(cfg: TrainConfig, data: TrainingData) -> tuple[TrainingData, list[int]]:
    """The samples the run's strategy trains on, and the indices of the ones it leaves out."""
    return audio_video.select_data(cfg, data) if _audio_video(cfg) else (data, [])
