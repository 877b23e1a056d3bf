"""Scoring an IC-LoRA sweep: how much closer to the ground truth each strength's generations get than the base.

For one reference the ground truth is known (the transformed clip a pair was made of), so the score is direct:
the mean squared error against the ground truth's latents at each strength (what training minimises, and
independent of how faithfully the VAE decodes), and the improvement over strength 0 (the base model with the same
reference guide, prompt and seeds). The decoded pixels' error is reported beside it.
"""

from __future__ import annotations

import dataclasses

import torch

MIN_IMPROVEMENT = 0.05
"""A strength must cut the base's error by at least this fraction to be recommended."""


def reference_factor(metadata: dict) -> int:
    """The LoRA's ``reference_downscale_factor``, read as Lightricks' pipelines read it (``int()``); 1 if absent."""
    value = metadata.get("reference_downscale_factor")
    if value in (None, ""):
        return 1
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the LoRA's reference_downscale_factor is {value!r}, not a whole number; Lightricks' "
                         "pipelines would ignore it. Re-save the LoRA with Save Comfy LoRA") from None


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean())


@dataclasses.dataclass
class ICStrength:
    strength: float
    error: float
    """Mean squared error against the ground truth's latents, over prompts and seeds."""
    improvement: float
    """1 - error / base error: 0.3 = 30% closer to the ground truth than the base model."""
    pixel_error: float
    """Mean squared error of the decoded clips against the ground truth's pixels (0..1)."""


@dataclasses.dataclass
class ICScores:
    strengths: list[ICStrength]
    recommended: float | None
    warnings: list[str]

    def as_dict(self) -> dict:
        return {"kind": "ic", "recommended": self.recommended, "warnings": self.warnings,
                "strengths": [{"strength": s.strength, "error": round(s.error, 6),
                               "improvement": round(s.improvement, 4), "pixel_error": round(s.pixel_error, 6)}
                              for s in self.strengths]}

    def report(self) -> str:
        lines = [*(f"WARNING: {w}" for w in self.warnings),
                 "Closeness to the ground truth (mean squared error of the latents; improvement over the base model; "
                 "mean squared error of the decoded pixels):",
                 f"{'strength':>8} {'error':>9} {'improvement':>11} {'pixels':>9}"]
        lines += [f"{s.strength:>8g} {s.error:>9.5f} {s.improvement:>11.1%} {s.pixel_error:>9.5f}"
                  for s in self.strengths]
        lines.append("Recommended strength: " + (f"{self.recommended:g}" if self.recommended is not None else "none"))
        return "\n".join(lines)


def score_ic(errors: dict[float, list[float]], pixel_errors: dict[float, list[float]]) -> ICScores:
    """Per strength (0 included), the latent and pixel error of every (prompt, seed) row."""
    if 0.0 not in errors:
        raise ValueError("the IC sweep needs strength 0 (the base model) to compare with")
    mean = {s: sum(v) / len(v) for s, v in errors.items()}
    pixels = {s: sum(v) / len(v) for s, v in pixel_errors.items()}
    base = mean[0.0]
    rows = [ICStrength(s, mean[s], 1 - mean[s] / base if base > 0 else 0.0, pixels[s]) for s in sorted(mean)]
    candidates = [r for r in rows if r.strength != 0 and r.improvement >= MIN_IMPROVEMENT]
    warnings = []
    if not candidates:
        best = max((r.improvement for r in rows if r.strength != 0), default=0.0)
        warnings.append(f"no strength brings the generations at least {MIN_IMPROVEMENT:.0%} closer to the ground "
                        f"truth than the base model (best {best:.1%}): the LoRA has not learned the mapping. Check "
                        "that the pairs match (reference -> target) and train longer")
    recommended = min(candidates, key=lambda r: r.error).strength if candidates else None
    return ICScores(rows, recommended, warnings)


def ic_plan(plan):
    """An IC sweep compares strengths under one reference: only the trigger prompts are sampled (bleed into
    unrelated prompts is not what an IC-LoRA is judged on; its output is tied to the reference)."""
    return dataclasses.replace(plan, prompts={"trigger": plan.prompts["trigger"], "no_trigger": (), "off_topic": ()})
