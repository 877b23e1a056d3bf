"""Validation sweep scores: how far the LoRA moves each group of samples, in seed-spread units, and the
recommended strength. Why latents and why seed-spread units: see ``sweep``."""

from __future__ import annotations

import dataclasses
import math
from itertools import combinations

import numpy as np
import torch

from .sweep import SweepPlan

NO_EFFECT = 0.02
"""Trigger effect (in seed-spread units) below which the LoRA is reported as changing nothing."""
KNEE = 0.8
"""The recommended strength is the lowest one reaching this fraction of the largest trigger effect."""
MAX_BLEED_RATIO = 0.5
"""Off-topic bleed above this fraction of the trigger effect disqualifies a strength from being recommended."""



def _rms(x: torch.Tensor) -> float:
    return x.double().pow(2).mean().sqrt().item()


@dataclasses.dataclass
class StrengthScores:
    strength: float
    trigger_effect: float
    """Change vs strength 0 on trigger prompts, in seed-spread units."""
    bleed_no_trigger: float
    """Change on the same prompts without the trigger."""
    bleed_off_topic: float
    """Change on unrelated prompts."""
    seed_consistency: float | None
    """Mean cosine, across seeds, of the change averaged over frames and pixels per latent channel: 1 = the LoRA
    pushes every seed the same way, ~0 = its effect depends on the seed. None where there is no change or one seed."""


@dataclasses.dataclass
class SweepScores:
    unit: str
    seed_spread: float
    strengths: list[StrengthScores]
    recommended: float | None
    warnings: list[str]

    def as_dict(self) -> dict:
        return {"unit": self.unit, "seed_spread": round(self.seed_spread, 6), "recommended": self.recommended,
                "strengths": [{k: (round(v, 4) if isinstance(v, float) else v)
                               for k, v in dataclasses.asdict(s).items()} for s in self.strengths],
                "warnings": self.warnings}

    def table(self) -> str:
        lines = [f"{'strength':>8} {'trigger':>8} {'no-trig':>8} {'off-top':>8} {'seed-cons':>9}"]
        for s in self.strengths:
            cons = "-" if s.seed_consistency is None else f"{s.seed_consistency:.2f}"
            lines.append(f"{s.strength:>8g} {s.trigger_effect:>8.3f} {s.bleed_no_trigger:>8.3f} "
                         f"{s.bleed_off_topic:>8.3f} {cons:>9}")
        return "\n".join(lines)

    def report(self) -> str:
        head = [f"Scores on final latents, in units of the seed spread ({self.unit}; 1.0 = as much change as a "
                "different seed).", self.table()]
        rec = ("Recommended strength: " + (f"{self.recommended:g}" if self.recommended is not None else "none"))
        return "\n".join([*(f"WARNING: {w}" for w in self.warnings), *head, rec])


def score_sweep(plan: SweepPlan, latents: dict[tuple[int, float], torch.Tensor]) -> SweepScores:
    """Scores from the final latents of every (row index, strength) cell of ``plan``."""
    rows = plan.rows
    missing = [(i, s) for i in range(len(rows)) for s in plan.strengths if (i, s) not in latents]
    if missing:
        raise ValueError(f"{len(missing)} sweep cells have no latent (first: row {missing[0][0]}, strength "
                         f"{missing[0][1]}); the sweep did not finish")
    lat = {k: v.detach().float().cpu() for k, v in latents.items()}
    by_prompt: dict[tuple[str, int], list[int]] = {}
    for i, row in enumerate(rows):
        by_prompt.setdefault((row.group, row.prompt_index), []).append(i)

    spreads = [_rms(lat[(a, 0.0)] - lat[(b, 0.0)]) for idx in by_prompt.values() for a, b in combinations(idx, 2)]
    if spreads:
        spread, unit = float(np.mean(spreads)), "seed spread"
    else:
        # One seed: an independent sample differs by ~sqrt(2) x its RMS, the closest stand-in for a seed change.
        spread = math.sqrt(2) * float(np.mean([_rms(lat[(i, 0.0)]) for i in range(len(rows))]))
        unit = "sqrt(2) x latent RMS (one seed: no seed spread to measure)"
    spread = max(spread, 1e-12)

    def effect(group: str, s: float) -> float:
        idx = [i for i, r in enumerate(rows) if r.group == group]
        if not idx:
            return float("nan")
        return float(np.mean([_rms(lat[(i, s)] - lat[(i, 0.0)]) for i in idx])) / spread

    def consistency(s: float) -> float | None:
        values = []
        for (group, _), idx in by_prompt.items():
            if group != "trigger" or len(idx) < 2:
                continue
            pooled = [(lat[(i, s)] - lat[(i, 0.0)]).flatten(2).mean(-1).flatten() for i in idx]
            if any(p.norm() < 1e-12 for p in pooled):
                return None
            values += [torch.nn.functional.cosine_similarity(a, b, dim=0).item() for a, b in combinations(pooled, 2)]
        return float(np.mean(values)) if values else None

    scores = [StrengthScores(s, effect("trigger", s), effect("no_trigger", s), effect("off_topic", s),
                             consistency(s)) for s in plan.strengths if s != 0.0]
    recommended, warnings = recommend(scores)
    return SweepScores(unit, spread, scores, recommended, warnings)


def recommend(scores: list[StrengthScores]) -> tuple[float | None, list[str]]:
    """The lowest strength reaching ``KNEE`` of the largest trigger effect, among strengths whose off-topic bleed
    stays under ``MAX_BLEED_RATIO`` of their trigger effect. Past the knee more strength buys little effect and
    more bleed; a LoRA that keeps growing linearly gets its highest tested strength."""
    warnings = []
    positive = [s for s in scores if s.strength > 0]
    if not positive:
        return None, ["no positive strength was sampled; add e.g. 0.5, 0.75, 1.0"]
    best = max(s.trigger_effect for s in positive)
    if not best >= NO_EFFECT:
        return None, [f"THIS LORA CHANGES NOTHING: its largest effect on the trigger prompts is {best:.4f} of a seed "
                      f"change (threshold {NO_EFFECT}). Check that it was trained for this base model, that its "
                      "keys load (no 'lora key not loaded' in the log), and that training ran enough steps."]
    clean = [s for s in positive
             if math.isnan(s.bleed_off_topic) or s.bleed_off_topic <= MAX_BLEED_RATIO * s.trigger_effect]
    pool = clean or positive
    if not clean:
        warnings.append("the LoRA bleeds into off-topic prompts at every tested strength (off-topic change above "
                        f"{MAX_BLEED_RATIO:g}x the trigger change): captions may be too generic or the learning "
                        "rate too high")
    top = max(s.trigger_effect for s in pool)
    chosen = min((s for s in pool if s.trigger_effect >= KNEE * top), key=lambda s: s.strength)
    by_strength = {s.strength: s for s in positive}
    if 1.0 in by_strength and not math.isnan(by_strength[1.0].bleed_no_trigger):
        full = by_strength[1.0]
        if full.bleed_no_trigger >= 0.9 * full.trigger_effect:
            warnings.append("the trigger word makes little difference: prompts without it change almost as much "
                            "as prompts with it")
    return chosen.strength, warnings

