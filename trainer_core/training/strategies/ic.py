"""IC-LoRA (ltx-trainer's ``video_to_video``): the target video is noised as in text-to-video (one sigma per sample,
first-frame conditioning with its probability); the clean reference video joins it as extra tokens at timestep 0,
placed on the target's grid by its spatial and temporal downscale factors, and excluded from the loss.

The loss is ltx-trainer's: a masked MSE normalised per sample, then averaged over the batch.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..denoiser import DenoiserOutput
from ..positions import reference_positions, scale_factors
from ...cache.training_data import TrainingData, TrainItem
from .base import StepBatch, StepContext
from .text_to_video import noised_video


class ICReference:
    name = "ic"

    def __init__(self):
        self.factors: tuple[int, int] | None = None
        """(spatial, temporal), fixed by the data: every pair of a run must share them."""

    def check(self, data: TrainingData) -> None:
        # group_key holds (video shape, context shape, audio shape, reference shape, fps) without loading tensors.
        for i in range(len(data)):
            video_shape, _, _, ref_shape, _ = data.group_key(i)
            if ref_shape is None:
                raise ValueError(f"IC-LoRA training needs a reference video for every sample, and "
                                 f"{data.item(i).sample_id} has none: add it in the manifest's reference_video "
                                 "column or as <clip>.ref.mp4 (or derive references in Latent Precompute), then "
                                 "re-run Latent Precompute")
            try:
                factors = scale_factors(video_shape, ref_shape)
            except ValueError as exc:
                raise ValueError(f"sample {data.item(i).sample_id}: {exc}") from None
            if self.factors is None:
                self.factors = factors
            elif factors != self.factors:
                raise ValueError(f"sample {data.item(i).sample_id}'s reference is downscaled by {factors} (spatial, "
                                 f"temporal) but earlier samples' by {self.factors}: one IC-LoRA is trained at one "
                                 "factor. Re-run Latent Precompute with one reference downscale factor")

    def prepare(self, items: Sequence[TrainItem], ctx: StepContext) -> StepBatch:
        batch = noised_video(items, ctx)
        ref = torch.stack([it.reference_latents for it in items]).float()
        b, _, f, h, w = ref.shape
        spatial, temporal = self.factors or scale_factors(items[0].video_latents.shape, ref.shape)
        batch.inputs.reference = ref.to(ctx.device)
        batch.inputs.reference_positions = reference_positions(f, h, w, spatial, temporal, b).to(ctx.device)
        batch.inputs.reference_timesteps = torch.zeros(b, f * h * w, device=ctx.device)
        return batch

    def loss(self, out: DenoiserOutput, batch: StepBatch) -> torch.Tensor:
        pred = out.video.float()
        err = (pred - batch.video_target.to(pred.device)) ** 2
        b = err.shape[0]
        mask = batch.video_loss_mask.to(pred.device).reshape(b, 1, *err.shape[2:]).float()
        per_sample = (err * mask).mean(dim=(1, 2, 3, 4)) / mask.mean(dim=(1, 2, 3, 4)).clamp_min(1e-8)
        return per_sample.mean()

    def metadata(self) -> dict[str, str]:
        spatial, temporal = self.factors or (1, 1)
        # Lightricks' pipelines parse it with int(): "2.0" would silently fall back to 1.
        meta = {"reference_downscale_factor": str(int(spatial))}
        if temporal != 1:
            meta["reference_temporal_scale_factor"] = str(int(temporal))
        return meta
