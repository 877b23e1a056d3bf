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
import os
import re
from fractions import Fraction
from itertools import combinations

import numpy as np
import torch

GROUPS = ("trigger", "no_trigger", "off_topic")
GROUP_LABELS = {"trigger": "trigger", "no_trigger": "no trigger", "off_topic": "off-topic"}
DEFAULT_STRENGTHS = (0.0, 0.5, 0.75, 1.0)
NO_EFFECT = 0.02
"""Trigger effect (in seed-spread units) below which the LoRA is reported as changing nothing."""
KNEE = 0.8
"""The recommended strength is the lowest one reaching this fraction of the largest trigger effect."""
MAX_BLEED_RATIO = 0.5
"""Off-topic bleed above this fraction of the trigger effect disqualifies a strength from being recommended."""

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


# -- scores -------------------------------------------------------------------------------------------------------

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


# -- grid ---------------------------------------------------------------------------------------------------------

def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """[T,H,W,3] float 0..1 (ComfyUI IMAGE layout) -> uint8."""
    return (frames.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_panel(lines: list[str], width: int, height: int, size: int, fill=(235, 235, 235),
                background=(24, 24, 24)) -> np.ndarray:
    """Text rendered into an RGB array, each line cut to fit the width. Pillow ships with ComfyUI and diffusers."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    y = 2
    for line in lines:
        if y + size > height:
            break
        draw.text((3, y), _fit_text(draw, line, font, width - 6), fill=fill, font=font)
        y += size + 2
    return np.asarray(image)


def _fit_text(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def _wrap(text: str, chars: int, max_lines: int) -> list[str]:
    if max_lines <= 0:
        return []
    words, lines, current = text.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > chars:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(chars - 1, 1)] + "..."
    return lines


def grid_cell_size(height: int, width: int, rows: int, cols: int, max_side: int = 3840) -> tuple[int, int]:
    """Cell size in the grid: the sample size, shrunk so the whole grid stays playable (<= ``max_side``)."""
    label_w = max(160, width)
    scale = min(1.0, (max_side - 40) / max(rows * height, 1), (max_side - label_w) / max(cols * width, 1))
    return max(16, int(height * scale) // 2 * 2), max(16, int(width * scale) // 2 * 2)


def fit_clip(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[T,H,W,3] uint8 or float 0..1 -> uint8 at ``size`` (H, W), area-averaged when shrinking. Callers that keep
    many cells shrink each one as it is decoded, so full-size clips never pile up in memory."""
    clip = clip if clip.dtype == torch.uint8 else to_uint8(clip)
    if tuple(clip.shape[1:3]) == tuple(size):
        return clip
    clip = torch.nn.functional.interpolate(clip.permute(0, 3, 1, 2).float(), size=size, mode="area")
    return clip.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def assemble_grid(cells: dict[tuple[int, int], torch.Tensor], row_labels: list[tuple[str, str]],
                  col_labels: list[str], corner: str = "", max_side: int = 3840) -> torch.Tensor:
    """A labelled grid video as uint8 [T, H, W, 3]: rows x columns of clips, a header row with ``col_labels`` (and
    ``corner`` above the row labels, naming what the columns are) and a left column with ``row_labels`` (title,
    prompt). Cells are [T,H,W,3] uint8 or float 0..1; clips shorter than
    the longest hold their last frame. Both sides come out even (H.264 4:2:0)."""
    n_rows, n_cols = len(row_labels), len(col_labels)
    if not cells:
        raise ValueError("no sweep cells to put in the grid")
    first = next(iter(cells.values()))
    frames = max(c.shape[0] for c in cells.values())
    ch, cw = grid_cell_size(first.shape[1], first.shape[2], n_rows, n_cols, max_side)
    size = max(9, min(16, ch // 5))
    label_w = max(160, cw)
    header_h = (size + 9) // 2 * 2
    height = header_h + n_rows * ch
    width = label_w + n_cols * cw
    height, width = height + height % 2, width + width % 2
    grid = torch.zeros(frames, height, width, 3, dtype=torch.uint8)
    grid[:, :header_h, :label_w] = torch.from_numpy(_text_panel([corner], label_w, header_h, size).copy())
    for c, text in enumerate(col_labels):
        panel = _text_panel([text], cw, header_h, size)
        grid[:, :header_h, label_w + c * cw: label_w + (c + 1) * cw] = torch.from_numpy(panel.copy())
    chars = max(8, int(label_w / (size * 0.55)))
    for r, (title, prompt) in enumerate(row_labels):
        lines = [title] + _wrap(prompt, chars, max(0, (ch - size) // (size + 2) - 1))
        panel = _text_panel(lines, label_w, ch, size)
        grid[:, header_h + r * ch: header_h + (r + 1) * ch, :label_w] = torch.from_numpy(panel.copy())
    for (r, c), clip in cells.items():
        clip = fit_clip(clip, (ch, cw))
        if clip.shape[0] < frames:
            clip = torch.cat([clip, clip[-1:].expand(frames - clip.shape[0], -1, -1, -1)])
        y, x = header_h + r * ch, label_w + c * cw
        grid[:, y: y + ch, x: x + cw] = clip
    return grid


def write_mp4(path: str | os.PathLike, frames: torch.Tensor, fps: float) -> str:
    """Writes uint8 [T,H,W,3] frames as H.264 (yuv420p, CRF 18) to ``path`` atomically; returns the path."""
    import av

    from ..atomic import atomic_path

    frames = frames if frames.dtype == torch.uint8 else to_uint8(frames)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = torch.nn.functional.pad(frames.permute(3, 0, 1, 2), (0, w % 2, 0, h % 2)).permute(1, 2, 3, 0)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            if codec == "libx264":
                stream.codec_context.options = {"crf": "18"}
            for k, image in enumerate(frames.numpy()):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = k
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    return str(path)
