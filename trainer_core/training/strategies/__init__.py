"""Training strategies, one file each; ``for_run`` picks the one a run uses."""

from __future__ import annotations

from ..config import TrainConfig
from ...cache.training_data import TrainingData
from .base import StepBatch, StepContext, TrainingStrategy
from .text_to_video import TextToVideo

__all__ = ["StepBatch", "StepContext", "TrainingStrategy", "for_run"]


def for_run(cfg: TrainConfig, data: TrainingData) -> TrainingStrategy:
    strategy = TextToVideo()
    strategy.check(data)
    return strategy
