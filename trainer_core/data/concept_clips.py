"""A generated dataset for checking that a LoRA learns a concept and binds it to its trigger word.

The world: coloured balls moving over coloured backgrounds, each caption naming ball colour, motion and background.
The concept: a ball that world never shows (checkered magenta and yellow), captioned like the others with the
trigger word where the colour goes, so the trigger is the only word that tells it apart (a caption word only the
concept has, such as "checkered", would let the LoRA bind to that word instead). Clips are written as real mp4 files with ``.txt`` captions, so they go through the Dataset Loader,
Frame Trimmer and Latent Precompute like a user's clips. Everything is deterministic.

Roles (one folder each):
* ``base``: the world only; what the tiny base model is pre-trained on, so it knows the world before the LoRA.
* ``train``: concept clips with the trigger, mixed with world clips without it (varied non-trigger clips are what
  teach a LoRA that the trigger, not everything, means the concept).
* ``concept``: held-out concept clips (motions and backgrounds combinations not trained), captioned with the trigger.
* ``off_topic``: held-out world clips, for bleed.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np

TRIGGER = "sks"
BALL_COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 180, 60), "white": (235, 235, 235),
                "orange": (240, 140, 30)}
BACKGROUNDS = {"grey": (90, 90, 100), "brown": (120, 90, 60), "navy": (30, 40, 110), "teal": (30, 110, 110)}
MOTIONS = ("sliding right", "circling", "bouncing", "sliding down")
_CHECKS = ((230, 40, 200), (250, 230, 40))

# (kind, colour, motion, background): kind "ball" or "concept".
_ROLES = {
    "base": [("ball", c, m, b) for i, (c, m, b) in enumerate(
        (c, m, b) for c in BALL_COLOURS for m in MOTIONS for b in BACKGROUNDS) if i % 4 == 0],
    "train": [("concept", None, MOTIONS[i % 4], b) for i, b in enumerate(("grey", "brown", "navy", "teal",
                                                                            "brown", "grey"))]
             + [("ball", c, m, b) for c, m, b in (("red", "circling", "grey"), ("blue", "bouncing", "teal"),
                                                 ("green", "sliding right", "brown"), ("white", "sliding down", "navy"),
                                                 ("orange", "circling", "navy"), ("red", "sliding down", "teal"))],
    "concept": [("concept", None, m, b) for m, b in (("circling", "teal"), ("sliding down", "grey"),
                                                      ("bouncing", "navy"), ("sliding right", "teal"))],
    "off_topic": [("ball", c, m, b) for c, m, b in (("blue", "circling", "brown"), ("orange", "bouncing", "grey"),
                                                   ("white", "sliding right", "teal"), ("green", "sliding down",
                                                                                        "navy"))],
}
ROLES = tuple(_ROLES)


def caption(kind: str, colour: str | None, motion: str, background: str, trigger: str = TRIGGER) -> str:
    subject = f"{trigger} ball".strip() if kind == "concept" else f"{colour} ball"
    return f"a {subject} {motion} on a {background} background"


def _centre(motion: str, t: float) -> tuple[float, float]:
    if motion == "sliding right":
        return 0.2 + 0.6 * t, 0.5
    if motion == "circling":
        return 0.5 + 0.25 * math.cos(2 * math.pi * t), 0.5 + 0.25 * math.sin(2 * math.pi * t)
    if motion == "bouncing":
        return 0.5, 0.25 + 0.5 * abs(math.cos(1.5 * math.pi * t))
    return 0.5, 0.2 + 0.6 * t


def render(kind: str, colour: str | None, motion: str, background: str, index: int, frames: int, width: int,
           height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.empty((height, width, 3), np.float32)
    rgb[:] = BACKGROUNDS[background]
    rgb *= (0.7 + 0.3 * y / max(1, height - 1))[..., None]
    cx, cy = _centre(motion, index / max(1, frames - 1))
    cx, cy, size = cx * width, cy * height, 0.22 * min(width, height)
    if kind == "concept":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= size**2
        checks = ((np.floor((x - cx) / (size / 2)) + np.floor((y - cy) / (size / 2))) % 2).astype(bool)
        rgb[inside & checks] = _CHECKS[0]
        rgb[inside & ~checks] = _CHECKS[1]
    else:
        rgb[(x - cx) ** 2 + (y - cy) ** 2 <= size**2] = BALL_COLOURS[colour]
    return np.ascontiguousarray(rgb.clip(0, 255).astype(np.uint8))


def role_specs(role: str) -> list[tuple]:
    """``(kind, colour, motion, background)`` of every clip of ``role``."""
    return list(_ROLES[role])


def render_clip(kind: str, colour: str | None, motion: str, background: str, *, frames: int, width: int,
                height: int):
    """``[F, H, W, 3]`` float 0..1 frames, as a frame loader returns them."""
    import torch

    return torch.from_numpy(np.stack([render(kind, colour, motion, background, k, frames, width, height)
                                      for k in range(frames)])).float() / 255


def write_concept_dataset(folder: str | Path, *, roles=ROLES, trigger: str = TRIGGER, frames: int = 9,
                          width: int = 128, height: int = 96, fps: int = 24) -> dict[str, Path]:
    """Writes each role's clips and captions into ``folder/<role>``; returns ``{role: folder}``. An empty
    ``trigger`` writes the concept captions without one (the control that must fail the binding check)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    out = {}
    for role in roles:
        target = Path(folder) / role
        target.mkdir(parents=True, exist_ok=True)
        for n, (kind, colour, motion, background) in enumerate(_ROLES[role]):
            path = target / f"{role}_{n:02d}.mp4"
            text = caption(kind, colour, motion, background, trigger)
            sidecar = path.with_suffix(".txt")
            if path.exists() and sidecar.exists() and sidecar.read_text(encoding="utf-8").strip() == text:
                # Kept: the encoder's bytes are not reproducible from process to process, and new bytes would
                # re-key (and re-encode) the latent cache built from these clips.
                continue
            with av.open(str(path), "w") as container:
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.options = {"crf": "12", "threads": "1"} if codec == "libx264" else {}
                for k in range(frames):
                    image = render(kind, colour, motion, background, k, frames, width, height)
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = k
                    container.mux(stream.encode(frame))
                container.mux(stream.encode())
            path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        out[role] = target
    return out
