"""Training strategies, one file each; ``for_run`` picks the one a run uses."""

from __future__ import annotations

from ..config import TrainConfig
from ...cache.training_data import TrainingData
from .base import StepBatch, StepContext, TrainingStrategy
from .ic import ICReference
from .text_to_video import TextToVideo

__all__ = ["StepBatch", "StepContext", "TrainingStrategy", "for_run"]


def for_run(cfg: TrainConfig, data: TrainingData) -> TrainingStrategy:
    """``cfg.strategy`` "auto" trains IC when every sample has reference latents; a partly paired dataset is
    refused rather than silently trained as text-to-video."""
    name = cfg.strategy
    if name == "auto":
        with_ref = sum(data.group_key(i)[3] is not None for i in range(len(data)))
        if 0 < with_ref < len(data):
            raise ValueError(f"{with_ref} of {len(data)} samples have a reference video: IC-LoRA training needs one "
                             "for every sample. Add the missing references, or set strategy to text_to_video to "
                             "ignore them")
        name = "ic" if with_ref else "text_to_video"
    if cfg.train_audio and name == "ic":
        raise ValueError("IC-LoRA training is video-only here: turn train_audio off, or set strategy to "
                         "text_to_video")
    strategy = ICReference() if name == "ic" else TextToVideo()
    strategy.check(data)
    return strategy
