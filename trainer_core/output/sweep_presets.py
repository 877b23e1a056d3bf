"""Sweep presets: how many prompts, seeds and strengths a Validation Sweep samples.

"quick" (the default) answers "did it learn, and at about what strength?" in a few cells: the first trigger prompt,
its no-trigger twin and the first off-topic prompt, 2 seeds (the fewest that measure a seed spread) and strengths
0, 0.5, 1.0 at 320x192x17, without per-cell clips: 3 x 2 x 3 = 18 small cells. "thorough" samples every prompt
line at 3 seeds over 0, 0.25, 0.5, 0.75, 1.0, 1.25 at 512x320x25 and saves every clip. "custom" takes the node's
own seeds, strengths, size and save_clips.
"""

from __future__ import annotations

import dataclasses

PRESETS = ("quick", "thorough", "custom")


@dataclasses.dataclass(frozen=True)
class SweepChoice:
    trigger_prompts: list[str]
    off_topic_prompts: list[str]
    no_trigger_prompts: list[str]
    strengths: list[float]
    seeds: int
    save_clips: bool
    size: tuple[int, int, int]
    """Width, height, frames."""


def apply_preset(preset: str, trigger_prompts: list[str], off_topic_prompts: list[str],
                 no_trigger_prompts: list[str], strengths: list[float], seeds: int, save_clips: bool,
                 size: tuple[int, int, int]) -> SweepChoice:
    if preset == "quick":
        return SweepChoice(trigger_prompts[:1], off_topic_prompts[:1], no_trigger_prompts[:1], [0.0, 0.5, 1.0], 2,
                           False, (320, 192, 17))
    if preset == "thorough":
        return SweepChoice(trigger_prompts, off_topic_prompts, no_trigger_prompts,
                           [0.0, 0.25, 0.5, 0.75, 1.0, 1.25], 3, True, (512, 320, 25))
    if preset == "custom":
        return SweepChoice(trigger_prompts, off_topic_prompts, no_trigger_prompts, strengths, seeds, save_clips,
                           tuple(size))
    raise ValueError(f"sweep preset {preset!r} is not one of {', '.join(PRESETS)}")
