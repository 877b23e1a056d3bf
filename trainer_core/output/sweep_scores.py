"""Validation sweep scores and the recommended strength.

Two kinds of score, both on final latents (why latents: see ``sweep``):

* **Efficacy** (direction-aware, needs the training latents): how far each output moved *toward the training
  data*. The training data is summarised by a concept reference, the mean over the cached training clips (those
  with the trigger) of per-channel latent statistics (mean and standard deviation over frames and pixels:
  resolution-free, so a sweep at another size compares). For a row, with f(.) those statistics, x0 its output at
  strength 0 and xs at strength s, efficacy is the projection of f(xs) - f(x0) on the way from f(x0) to the
  reference, as a fraction of that way: 0 = no move toward the concept (a zero LoRA scores exactly 0, a LoRA that
  only adds noise ~0), 1 = the outputs' statistics reached the training data's. Trigger rows give the efficacy,
  no-trigger rows show binding, off-topic rows the bleed toward the concept.
* **Change** (seed-spread units, no reference needed): how far each output moved at all, whatever the direction; an
  effect of 1.0 means "as much as changing the seed". It tells "changes nothing" apart, not "learned".

The recommended strength maximises trigger efficacy among strengths whose off-topic bleed stays under
``MAX_BLEED``, taking the lowest strength within ``KNEE`` of that maximum. Without a reference it falls back to
the change scores.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import combinations

import numpy as np
import torch

from .sweep import SweepPlan

NO_EFFECT = 0.02
"""Trigger effect (in seed-spread units) below which the LoRA is reported as changing nothing."""
NO_EFFICACY = 0.05
"""Trigger efficacy below which the LoRA is reported as not moving outputs toward its training data."""
MAX_BLEED = 0.2
"""Off-topic efficacy (outputs moving toward the concept) above which a strength is not recommended."""
KNEE = 0.8
"""The recommended strength is the lowest one reaching this fraction of the largest trigger effect."""
MAX_BLEED_RATIO = 0.5
"""Off-topic bleed above this fraction of the trigger effect disqualifies a strength from being recommended."""



def _rms(x: torch.Tensor) -> float:
    return x.double().pow(2).mean().sqrt().item()


def latent_features(latents: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation over frames and pixels of ``[128, F', H', W']`` (or with a leading
    batch of 1): a resolution-free summary of what a latent shows (colours, textures), 256 values."""
    x = latents.detach().double().reshape(-1, *latents.shape[-4:])[0].flatten(1)
    return torch.cat([x.mean(1), x.std(1, unbiased=False)])


@dataclasses.dataclass
class ConceptReference:
    features: torch.Tensor
    """Mean ``latent_features`` of the training clips."""
    clips: int
    source: str


def concept_reference(data, trigger: str = "") -> ConceptReference:
    """The reference from cached training latents (a ``TrainingData``): the clips whose caption holds the trigger
    when the data knows captions and any do, else every clip."""
    from ..training.learning_check import has_trigger

    caption_of = getattr(data, "caption", None)
    indices = list(range(len(data)))
    chosen = [i for i in indices if caption_of is not None and has_trigger(caption_of(i) or "", trigger)]
    if not indices:
        raise ValueError("the latent cache holds no clips to compare the sweep with")
    feats = torch.stack([latent_features(data.item(i).video_latents) for i in (chosen or indices)])
    what = f"with the trigger '{trigger.strip()}'" if chosen else "(all: none has the trigger in its caption)"
    return ConceptReference(feats.mean(0), len(chosen or indices), f"{len(chosen or indices)} cached training "
                            f"clips {what}")


def _toward(reference: torch.Tensor, base: torch.Tensor, moved: torch.Tensor) -> float:
    way = reference - latent_features(base)
    length2 = float(way.pow(2).sum())
    if length2 < 1e-12:
        return 0.0
    return float(((latent_features(moved) - latent_features(base)) * way).sum()) / length2


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
    efficacy: float | None = None
    """Trigger rows' move toward the training data, as a fraction of the way (None without a reference)."""
    efficacy_no_trigger: float | None = None
    """The same for the prompts without the trigger: well below ``efficacy`` when the LoRA is bound to it."""
    bleed_toward_concept: float | None = None
    """The same for off-topic rows: how far unrelated outputs moved toward the concept."""


@dataclasses.dataclass
class SweepScores:
    unit: str
    seed_spread: float
    strengths: list[StrengthScores]
    recommended: float | None
    warnings: list[str]
    reference: str | None = None
    """What the efficacy compares with (None: efficacy not measured)."""

    def as_dict(self) -> dict:
        return {"unit": self.unit, "seed_spread": round(self.seed_spread, 6), "recommended": self.recommended,
                "reference": self.reference,
                "strengths": [{k: (round(v, 4) if isinstance(v, float) else v)
                               for k, v in dataclasses.asdict(s).items()} for s in self.strengths],
                "warnings": self.warnings}

    def table(self) -> str:
        def f(v):
            return "-" if v is None else f"{v:.3f}"
        lines = [f"{'strength':>8} {'efficacy':>8} {'no-trig':>8} {'bleed':>8} | {'change':>7} {'no-trig':>8} "
                 f"{'off-top':>8} {'seed-cons':>9}"]
        for s in self.strengths:
            cons = "-" if s.seed_consistency is None else f"{s.seed_consistency:.2f}"
            lines.append(f"{s.strength:>8g} {f(s.efficacy):>8} {f(s.efficacy_no_trigger):>8} "
                         f"{f(s.bleed_toward_concept):>8} | {s.trigger_effect:>7.3f} {s.bleed_no_trigger:>8.3f} "
                         f"{s.bleed_off_topic:>8.3f} {cons:>9}")
        return "\n".join(lines)

    def report(self) -> str:
        if self.reference:
            toward = (f"Efficacy: how far outputs moved toward the training data ({self.reference}), as a fraction "
                      "of the way: trigger prompts, the same without the trigger, and off-topic prompts (bleed).")
        else:
            toward = ("Efficacy: not measured (connect the latent cache the LoRA was trained on to measure movement "
                      "toward the training data).")
        head = [toward, f"Change: how far outputs moved at all, in units of the seed spread ({self.unit}; 1.0 = as "
                "much change as a different seed).", self.table()]
        rec = ("Recommended strength: " + (f"{self.recommended:g}" if self.recommended is not None else "none"))
        return "\n".join([*(f"WARNING: {w}" for w in self.warnings), *head, rec])


def score_sweep(plan: SweepPlan, latents: dict[tuple[int, float], torch.Tensor],
                reference: ConceptReference | None = None) -> SweepScores:
    """Scores from the final latents of every (row index, strength) cell of ``plan``; efficacy needs the
    ``reference`` of the training data."""
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

    def efficacy(group: str, s: float) -> float | None:
        idx = [i for i, r in enumerate(rows) if r.group == group]
        if reference is None or not idx:
            return None
        return float(np.mean([_toward(reference.features, lat[(i, 0.0)], lat[(i, s)]) for i in idx]))

    scores = [StrengthScores(s, effect("trigger", s), effect("no_trigger", s), effect("off_topic", s),
                             consistency(s), efficacy("trigger", s), efficacy("no_trigger", s),
                             efficacy("off_topic", s)) for s in plan.strengths if s != 0.0]
    if reference is None:
        recommended, warnings = recommend(scores)
    else:
        recommended, warnings = recommend_by_efficacy(scores)
    return SweepScores(unit, spread, scores, recommended, warnings,
                       reference.source if reference is not None else None)


def recommend_by_efficacy(scores: list[StrengthScores]) -> tuple[float | None, list[str]]:
    """The lowest strength within ``KNEE`` of the best trigger efficacy among strengths whose off-topic bleed
    toward the concept stays under ``MAX_BLEED``."""
    positive = [s for s in scores if s.strength > 0]
    if not positive:
        return None, ["no positive strength was sampled; add e.g. 0.5, 0.75, 1.0"]
    best = max(s.efficacy for s in positive)
    if not best >= NO_EFFICACY:
        changes = max(s.trigger_effect for s in positive) >= NO_EFFECT
        what = ("it changes the outputs, but not toward its training data (a broken or mismatched LoRA, or one "
                "trained on other data than this cache)" if changes else "it changes nothing")
        return None, [f"THIS LORA DOES NOT MOVE THE TRIGGER PROMPTS TOWARD ITS TRAINING DATA: best efficacy "
                      f"{best:.3f} (threshold {NO_EFFICACY}); {what}. Check that it was trained for this base model "
                      "on this cache, that its keys load, and that training learned (see the trainer's 'Did it "
                      "learn?' line)."]
    warnings = []
    clean = [s for s in positive if s.bleed_toward_concept is None or s.bleed_toward_concept <= MAX_BLEED]
    if not clean:
        warnings.append(f"the LoRA pulls off-topic prompts toward its concept at every tested strength (more than "
                        f"{MAX_BLEED:.0%} of the way): add varied clips without the trigger, or lower the strength")
    pool = clean or positive
    top = max(s.efficacy for s in pool)
    chosen = min((s for s in pool if s.efficacy >= KNEE * top), key=lambda s: s.strength)
    unbound = [s for s in positive if s.efficacy_no_trigger is not None and s.efficacy > 0
               and s.efficacy_no_trigger >= 0.7 * s.efficacy]
    if unbound and len(unbound) == len(positive):
        warnings.append("the trigger word makes little difference: prompts without it move toward the concept "
                        "almost as much as prompts with it")
    return chosen.strength, warnings


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

