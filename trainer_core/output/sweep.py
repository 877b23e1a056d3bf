"""Validation sweep: what to sample, how to score it, which strength to recommend, and the labelled grid video.

The plan follows the retraining guide's checklist: trigger prompts (does the trigger activate the concept?), the
same prompts without the trigger (does the LoRA act without it?), off-topic prompts (does it bleed into unrelated
scenes?), several seeds (does it hold across seeds?) and a strength sweep that always includes 0 (the base model).

Scores are computed on the final *latents*, not on decoded frames:
* the LTX VAE decoder is not a fixed function in every release (LTX-2's injects noise at decode time), so decoded
  differences would mix the LoRA's effect with decoder noise; latents isolate the LoRA;
* latents are ~50x smaller than frames and need no decode for scoring (frames are still decoded for viewing);
* LTX latents are per-channel normalised by the VAE, so Euclidean distances weigh channels evenly.
The price: a score says how much the model's output moved, not how visible the move is after decoding.

Units: every distance is divided by the *seed spread*, the mean RMS distance between two seeds of the same prompt
at strength 0. An effect of 1.0 means "the LoRA changes the output as much as changing the seed does"; the
"changes nothing" threshold, 2% of that, sits far above float noise and far below anything visible.
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch

GROUPS = ("trigger", "no_trigger", "off_topic")
GROUP_LABELS = {"trigger": "trigger", "no_trigger": "no trigger", "off_topic": "off-topic"}
DEFAULT_STRENGTHS = (0.0, 0.5, 0.75, 1.0)

# LTX-2.3's distilled schedule, as the core "Text to Video (LTX-2.3)" blueprint's ManualSigmas has it.
DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0)
MODES = {
    # steps, cfg: LTX-2.3 dev wants CFG 3-4 over 20-30 steps (20 keeps the sweep cheap); distilled is 8 steps, CFG 1.
    "dev": (20, 3.5),
    "distilled": (len(DISTILLED_SIGMAS) - 1, 1.0),
}


# -- plan ---------------------------------------------------------------------------------------------------------

def parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_strengths(text: str) -> list[float]:
    """``"0, 0.5, 0.75, 1"`` -> sorted unique strengths, always with 0 (the baseline every score compares to)."""
    values = []
    for part in re.split(r"[,\s;]+", text.strip()):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"strength {part!r} is not a number; write strengths like '0, 0.5, 0.75, 1.0'") from None
        if not math.isfinite(value) or abs(value) > 10:
            raise ValueError(f"strength {part} is outside -10..10; LoRA strengths are usually 0..1.5")
        values.append(value)
    values = sorted(set(values) | {0.0})
    if len(values) < 2:
        raise ValueError("give at least one strength besides 0, e.g. '0, 0.5, 0.75, 1.0'")
    return values


def _trigger_pattern(trigger: str) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(trigger.strip()) + r"(?!\w)", re.IGNORECASE)


def add_trigger(prompt: str, trigger: str) -> str:
    trigger = trigger.strip()
    if not trigger or _trigger_pattern(trigger).search(prompt):
        return prompt
    return f"{trigger} {prompt}"


def strip_trigger(prompt: str, trigger: str) -> str:
    if not trigger.strip():
        return prompt
    text = _trigger_pattern(trigger).sub(" ", prompt)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip(" ,;")


@dataclasses.dataclass(frozen=True)
class Row:
    group: str
    prompt_index: int
    prompt: str
    seed: int

    @property
    def label(self) -> str:
        return f"{GROUP_LABELS[self.group]} {self.prompt_index + 1} / seed {self.seed}"


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    trigger: str
    prompts: dict[str, tuple[str, ...]]
    strengths: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def rows(self) -> list[Row]:
        """Grid rows: group, then prompt, then seed (seeds of one prompt side by side vertically)."""
        return [Row(group, i, prompt, seed) for group in GROUPS for i, prompt in enumerate(self.prompts[group])
                for seed in self.seeds]

    def texts(self) -> list[str]:
        """Every distinct prompt text, in plan order (what a conditioning cache must contain)."""
        return list(dict.fromkeys(p for g in GROUPS for p in self.prompts[g]))

    @property
    def num_samples(self) -> int:
        return len(self.rows) * len(self.strengths)


def make_plan(trigger: str, trigger_prompts: list[str], off_topic_prompts: list[str],
              no_trigger_prompts: list[str] | None = None, strengths=DEFAULT_STRENGTHS, seeds=(0, 1, 2)) -> SweepPlan:
    """Trigger prompts get the trigger prepended when they lack it; the no-trigger group defaults to the same
    prompts with the trigger removed, which is the comparison the trigger test needs."""
    trigger = trigger.strip()
    if not trigger_prompts:
        raise ValueError("give at least one trigger prompt (one per line): a scene that should show what the LoRA "
                         "learned")
    with_trigger = [add_trigger(p, trigger) for p in trigger_prompts]
    if no_trigger_prompts:
        without = list(no_trigger_prompts)
    elif trigger:
        without = [strip_trigger(p, trigger) for p in with_trigger]
    else:
        without = []
    if trigger and any(_trigger_pattern(trigger).search(p) for p in list(without) + list(off_topic_prompts)):
        raise ValueError(f"the trigger {trigger!r} appears in a no-trigger or off-topic prompt; remove it there, or "
                         "those prompts cannot measure bleed")
    seeds = tuple(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("give at least one seed")
    return SweepPlan(trigger, {"trigger": tuple(with_trigger), "no_trigger": tuple(without),
                               "off_topic": tuple(off_topic_prompts)},
                     tuple(sorted(set(float(s) for s in strengths) | {0.0})), seeds)


# -- sigmas -------------------------------------------------------------------------------------------------------

def ltx_sigmas(steps: int, tokens: int, max_shift: float = 2.05, base_shift: float = 0.95,
               terminal: float = 0.1) -> torch.Tensor:
    """The schedule of ComfyUI's ``LTXVScheduler`` (stretch on): a token-count-dependent shift, stretched so the
    last non-zero sigma is ``terminal``. Kept here so the sweep needs no core node instance."""
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    slope = (max_shift - base_shift) / (4096 - 1024)
    shift = tokens * slope + base_shift - slope * 1024
    sigmas = torch.where(sigmas != 0, math.exp(shift) / (math.exp(shift) + (1 / sigmas - 1)), 0)
    nonzero = sigmas != 0
    one_minus = 1.0 - sigmas[nonzero]
    sigmas[nonzero] = 1.0 - one_minus / (one_minus[-1] / (1.0 - terminal))
    return sigmas


def mode_settings(mode: str, steps: int = 0, cfg: float = 0.0) -> tuple[int, float]:
    """(steps, cfg) of a mode, each overridden when given (> 0)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {sorted(MODES)}")
    default_steps, default_cfg = MODES[mode]
    return (steps if steps > 0 else default_steps), (cfg if cfg > 0 else default_cfg)


def sweep_sigmas(mode: str, steps: int, tokens: int) -> torch.Tensor:
    if mode == "distilled" and steps == len(DISTILLED_SIGMAS) - 1:
        return torch.tensor(DISTILLED_SIGMAS)
    return ltx_sigmas(steps, tokens)
