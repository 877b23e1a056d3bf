"""What the trainer reads: precomputed latents and processed text context, one item per sample.

The Latent Precompute cache implements ``TrainingData``; tests and the demo may implement it in memory.
Context is the *processed* conditioning the DiT consumes (after the text connectors), video and audio widths
concatenated on the last axis as ComfyUI's LTXAV model takes it.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch


@dataclasses.dataclass
class TrainItem:
    sample_id: str
    video_latents: torch.Tensor
    """``[128, F', H', W']`` normalised VAE latent means."""
    context: torch.Tensor
    """``[L, D_video + D_audio]`` processed text context."""
    fps: float
    audio_latents: torch.Tensor | None = None
    """``[8, T, 16]`` audio VAE latents when the run trains audio."""
    reference_latents: torch.Tensor | None = None
    """``[128, F'r, H'r, W'r]`` IC-LoRA reference latents."""

    def group_key(self) -> tuple:
        """Items with equal keys can share a batch: same shapes and frame rate."""
        audio = None if self.audio_latents is None else tuple(self.audio_latents.shape)
        ref = None if self.reference_latents is None else tuple(self.reference_latents.shape)
        return tuple(self.video_latents.shape), tuple(self.context.shape), audio, ref, self.fps


class TrainingData(Protocol):
    def __len__(self) -> int: ...

    def item(self, index: int) -> TrainItem: ...

    def group_key(self, index: int) -> tuple:
        """Cheap key (no tensor loading): items with equal keys have equal shapes and fps and may share a batch."""
        ...

    def empty_context(self) -> torch.Tensor:
        """Processed context of the empty caption, ``[L, D]``, used for caption dropout."""
        ...

    def fingerprint(self) -> str:
        """Identity of the data (keys of every item); written into checkpoints and the LoRA's metadata."""
        ...


@dataclasses.dataclass
class InMemoryData:
    """``TrainingData`` over a list of items held in memory (the demo, tests, small runs)."""

    items: list[TrainItem]
    empty: torch.Tensor
    name: str = "in-memory"

    def __len__(self) -> int:
        return len(self.items)

    def item(self, index: int) -> TrainItem:
        return self.items[index]

    def group_key(self, index: int) -> tuple:
        return self.items[index].group_key()

    def empty_context(self) -> torch.Tensor:
        return self.empty

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(self.name.encode())
        for it in self.items:
            h.update(it.sample_id.encode())
            h.update(str(tuple(it.video_latents.shape)).encode())
        return h.hexdigest()[:16]


@dataclasses.dataclass
class Subset:
    """Some items of another ``TrainingData`` (e.g. an audio-video run leaving silent clips out)."""

    base: TrainingData
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, index: int) -> TrainItem:
        return self.base.item(self.indices[index])

    def group_key(self, index: int) -> tuple:
        return self.base.group_key(self.indices[index])

    def empty_context(self) -> torch.Tensor:
        return self.base.empty_context()

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(f"{self.base.fingerprint()}:{self.indices}".encode()).hexdigest()[:16]
