"""Did the LoRA learn its concept, and is it bound to the trigger word?

A falling training loss proves little: on a weak base any LoRA lowers every loss. What tells learning apart is the
same denoising loss measured with and without the LoRA, at fixed noise seeds and sigmas (never the training draws),
on three kinds of cases:

* concept: clips of the concept with their trigger captions. The LoRA should lower this loss clearly.
* untriggered: the same clips without the trigger. A LoRA bound to its trigger lowers it much less.
* off-topic (optional): clips of other content with their own captions. The LoRA should not raise it much (bleed).

After training, the trainer runs this on its own cached samples: the samples whose caption holds the trigger are
the concept cases, and the same samples with the empty caption stand in for "without the trigger" (the cache holds
no trigger-free version of each caption; a LoRA that acts without any caption acts everywhere). The test bed and
the demo run it on held-out clips with trigger-stripped captions and held-out off-topic clips.
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch

from . import objective
from .denoiser import DenoiserInput

SIGMAS = (0.3, 0.5, 0.7, 0.9)
"""Noise levels of the check: where the prediction depends on content (near 0 the input gives it away)."""
SEEDS = (1009, 2003, 3001)
"""Fixed noise seeds, apart from any seed a run draws from."""
LEARNED_DROP = 0.03
"""The concept loss must fall by at least this fraction for the LoRA to count as having learned (the loss is
mostly irreducible noise: a learned concept moves it by a few percent, a noise LoRA raises it)."""
BOUND_RATIO = 0.5
"""Bound: the loss without the trigger falls by at most this fraction of the fall with it."""
MAX_CASES = 4
"""Cases per kind in the trainer's check (it runs after every training, so it stays a few seconds)."""


@dataclasses.dataclass(frozen=True)
class Case:
    latents: torch.Tensor
    """``[128, F', H', W']`` clean latents."""
    context: torch.Tensor
    """``[L, D]`` processed text context."""
    fps: float


@torch.no_grad()
def mean_loss(denoiser, cases: list[Case], seeds=SEEDS, sigmas=SIGMAS, device=None, batch: int = 16) -> float:
    """The training objective (velocity MSE over all tokens) averaged over cases x seeds x sigmas, ``batch``
    (seed, sigma) pairs of a case per forward."""
    pairs = [(seed, float(s)) for seed in seeds for s in sigmas]
    total = 0.0
    for case in cases:
        for start in range(0, len(pairs), batch):
            chunk = pairs[start:start + batch]
            n = len(chunk)
            x0 = case.latents.float()[None].expand(n, *case.latents.shape)
            noise = torch.cat([torch.randn((1, *case.latents.shape), generator=torch.Generator().manual_seed(seed))
                               for seed, _ in chunk])
            sigma = torch.tensor([s for _, s in chunk])
            token_sigma = sigma[:, None].expand(n, objective.video_token_count(x0))
            context = case.context.float()[None].expand(n, *case.context.shape)
            inputs = DenoiserInput(video=objective.noisy_input(x0, noise, token_sigma).to(device),
                                   video_timesteps=token_sigma.to(device), sigma=sigma.to(device),
                                   context=context.to(device), fps=case.fps)
            pred = denoiser(inputs).video.float().cpu()
            total += (pred - objective.velocity_target(x0, noise)).pow(2).mean(dim=(1, 2, 3, 4)).sum().item()
    return total / max(len(cases) * len(pairs), 1)


@dataclasses.dataclass
class LearningCheck:
    concept: tuple[float, float]
    """(base, LoRA) loss on the concept cases with the trigger."""
    untriggered: tuple[float, float] | None
    """(base, LoRA) loss on the same clips without the trigger; None when there is no trigger to remove."""
    off_topic: tuple[float, float] | None = None
    """(base, LoRA) loss on clips of other content; None when none were given."""
    untriggered_means: str = "the trigger removed from the caption"

    @staticmethod
    def _drop(pair) -> float:
        base, lora = pair
        return (base - lora) / base if base > 0 else 0.0

    @property
    def concept_drop(self) -> float:
        """Fraction by which the LoRA lowers the concept loss (positive = learned)."""
        return self._drop(self.concept)

    @property
    def untriggered_drop(self) -> float | None:
        return None if self.untriggered is None else self._drop(self.untriggered)

    @property
    def binding(self) -> float | None:
        """Share of the LoRA's gain that needs the trigger: 1 = only with the trigger, 0 = as much without it."""
        if self.untriggered is None or self.concept_drop <= 0:
            return None
        return 1.0 - self.untriggered_drop / self.concept_drop

    @property
    def bleed(self) -> float | None:
        """Fraction by which the LoRA raises the off-topic loss (negative = lowers it)."""
        return None if self.off_topic is None else -self._drop(self.off_topic)

    @property
    def verdict(self) -> str:
        if not self.concept_drop >= LEARNED_DROP:
            return ("did not learn: the concept loss fell by less than "
                    f"{LEARNED_DROP:.0%}; train longer, raise the learning rate or check the captions")
        if self.binding is None:
            return "learned (no trigger word to check binding against)"
        if self.binding >= 1 - BOUND_RATIO:
            return "learned and bound to the trigger"
        return ("learned but not bound to the trigger: it acts without the trigger too; add varied clips without "
                "the trigger (other subjects, captioned as usual)")

    def line(self) -> str:
        parts = [f"concept loss {self.concept[0]:.4f} -> {self.concept[1]:.4f} ({-self.concept_drop:+.1%})"]
        if self.untriggered is not None:
            parts.append(f"without the trigger {self.untriggered[0]:.4f} -> {self.untriggered[1]:.4f} "
                         f"({-self.untriggered_drop:+.1%})")
        if self.off_topic is not None:
            parts.append(f"off-topic {self.off_topic[0]:.4f} -> {self.off_topic[1]:.4f} ({self.bleed:+.1%})")
        return f"Did it learn? {self.verdict}. " + "; ".join(parts) + "."

    def fields(self) -> dict:
        def r(v):
            return None if v is None else round(v, 5)
        return {"verdict": self.verdict, "concept_loss": [r(v) for v in self.concept],
                "untriggered_loss": None if self.untriggered is None else [r(v) for v in self.untriggered],
                "off_topic_loss": None if self.off_topic is None else [r(v) for v in self.off_topic],
                "concept_drop": r(self.concept_drop), "untriggered_drop": r(self.untriggered_drop),
                "binding": r(self.binding), "bleed": r(self.bleed), "untriggered_means": self.untriggered_means,
                "seeds": list(SEEDS), "sigmas": list(SIGMAS)}


def compare(denoiser, lora, concept: list[Case], untriggered: list[Case] | None = None,
            off_topic: list[Case] | None = None, device=None,
            untriggered_means: str = "the trigger removed from the caption", batch: int = 16) -> LearningCheck:
    """Base vs LoRA loss on each kind of case. ``lora`` is anything with an ``attached()`` context (``LoraSet``)."""
    def both(cases):
        if not cases:
            return None
        base = mean_loss(denoiser, cases, device=device, batch=batch)
        with lora.attached():
            return base, mean_loss(denoiser, cases, device=device, batch=batch)
    return LearningCheck(both(concept), both(untriggered), both(off_topic), untriggered_means)


def has_trigger(caption: str, trigger: str) -> bool:
    return bool(trigger.strip()) and re.search(r"(?<!\w)" + re.escape(trigger.strip()) + r"(?!\w)", caption,
                                               re.IGNORECASE) is not None


def check_training_data(denoiser, lora, data, trigger: str, device=None, batch: int = 16) -> LearningCheck | None:
    """The check on a run's own cached samples (see the module docstring); None when the data cannot say (no
    captions known). Samples with the trigger are the concept; without a trigger, every sample is."""
    caption_of = getattr(data, "caption", None)
    if caption_of is None or len(data) == 0:
        return None
    indices = [i for i in range(len(data)) if has_trigger(caption_of(i) or "", trigger)]
    bound_check = bool(indices)
    indices = (indices or list(range(len(data))))
    step = max(1, math.ceil(len(indices) / MAX_CASES))
    items = [data.item(i) for i in indices[::step]]
    concept = [Case(it.video_latents, it.context, it.fps) for it in items]
    empty = data.empty_context()
    untriggered = [Case(it.video_latents, empty, it.fps) for it in items] if bound_check else None
    return compare(denoiser, lora, concept, untriggered, device=device, untriggered_means="the empty caption",
                   batch=batch)
