"""Validation sweep with sound: the grid video carries every cell's generated audio, and the audio half of the LoRA
is scored on audio latents as the video half is on video latents.

A grid shows all cells at once, but only one sound can play at a time. The grid video therefore plays once per
cell, in reading order (row by row, left to right): during cell k's turn a frame is drawn around cell k and the
sound track is cell k's audio. Scrubbing to a cell's turn plays what that cell generated; the per-cell clips
carry their own audio too. Frames are streamed to the encoder turn by turn, so the long grid never sits in memory.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterable, Iterator

import numpy as np
import torch

from ..atomic import atomic_path
from .sweep import SweepPlan
from .sweep_scores import SweepScores, score_sweep

HIGHLIGHT = (255, 196, 0)


def follow_video(audio_strength: float) -> bool:
    """A negative audio strength means the audio half follows each column's (video) strength."""
    return audio_strength < 0


def strength_pair(video_strength: float, audio_strength: float) -> tuple[float, float]:
    return video_strength, (video_strength if follow_video(audio_strength) else audio_strength)


def column_label(video_strength: float, audio_strength: float) -> str:
    if follow_video(audio_strength):
        return f"{video_strength:g}"
    return f"v {video_strength:g} / a {audio_strength:g}"


def score_audio(plan: SweepPlan, audio_latents: dict[tuple[int, float], torch.Tensor],
                audio_strength: float) -> SweepScores | None:
    """Audio-half scores over the columns (None when the audio half is held at one strength: every column then
    differs only through the audio<->video attention, which the video scores already show)."""
    if not follow_video(audio_strength):
        return None
    return score_sweep(plan, audio_latents)


def audio_report(scores: SweepScores | None, audio_strength: float) -> str:
    if scores is None:
        return (f"Audio half held at strength {audio_strength:g} in every column (set audio_strength to -1 to sweep "
                "and score it with the video).")
    text = scores.report().replace("Recommended strength:", "Strongest-effect-per-bleed strength for the audio:")
    return "AUDIO (scores on audio latents):\n" + text


def cell_boxes(layout: dict, n_rows: int, n_cols: int) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """``(y, x, h, w)`` of every cell, from ``sweep_grid.grid_layout``."""
    ch, cw, top, left = layout["cell_h"], layout["cell_w"], layout["header_h"], layout["label_w"]
    return {(r, c): (top + r * ch, left + c * cw, ch, cw) for r in range(n_rows) for c in range(n_cols)}


def _highlight(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y, x, h, w = box
    t = max(2, min(h, w) // 24)
    out = frame.copy()
    out[y:y + t, x:x + w] = HIGHLIGHT
    out[y + h - t:y + h, x:x + w] = HIGHLIGHT
    out[y:y + h, x:x + t] = HIGHLIGHT
    out[y:y + h, x + w - t:x + w] = HIGHLIGHT
    return out


def fit_wave(wave: torch.Tensor, samples: int) -> np.ndarray:
    """``[C, S]`` float -> stereo float32 ``[2, samples]``: mono doubled, cut or zero-padded to the clip's span."""
    w = wave.detach().float().cpu()
    w = w.reshape(-1, w.shape[-1])
    w = w.expand(2, -1) if w.shape[0] == 1 else w[:2]
    if w.shape[1] < samples:
        w = torch.nn.functional.pad(w, (0, samples - w.shape[1]))
    return np.ascontiguousarray(w[:, :samples].clamp(-1, 1).numpy())


def write_av_mp4(path: str | os.PathLike, turns: Iterable[tuple[Iterator[np.ndarray], torch.Tensor]], fps: float,
                 sample_rate: int, frames_per_turn: int, size: tuple[int, int]) -> str:
    """H.264 + AAC stereo mp4, atomically. ``turns``: (uint8 ``[H, W, 3]`` frames, ``[C, S]`` waveform) each;
    every turn lasts ``frames_per_turn`` frames and its audio is fitted to that span."""
    import av

    height, width = size
    rate = Fraction(fps).limit_denominator(1001)
    span = int(round(frames_per_turn / float(rate) * sample_rate))
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            video = container.add_stream(codec, rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                video.codec_context.options = {"crf": "18"}
            audio = container.add_stream("aac", rate=sample_rate)
            audio.layout = "stereo"
            vpts = apts = 0
            for frames, wave in turns:
                for image in frames:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                    frame.pts = vpts
                    vpts += 1
                    container.mux(video.encode(frame))
                samples = fit_wave(wave, span)
                for k in range(0, span, 1024):
                    chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k:k + 1024]), format="fltp",
                                                       layout="stereo")
                    chunk.sample_rate, chunk.pts = sample_rate, apts
                    apts += chunk.samples
                    container.mux(audio.encode(chunk))
            container.mux(video.encode())
            container.mux(audio.encode())
    return str(path)


def write_clip_with_sound(path: str | os.PathLike, clip: torch.Tensor, wave: torch.Tensor, fps: float,
                          sample_rate: int) -> str:
    """One cell: uint8 ``[T, H, W, 3]`` frames (even sides) and its own audio."""
    frames = clip.numpy()
    return write_av_mp4(path, [(iter(frames), wave)], fps, sample_rate, len(frames), frames.shape[1:3])


def write_grid_with_sound(path: str | os.PathLike, grid: torch.Tensor, boxes: dict, waves: dict, fps: float,
                          sample_rate: int) -> str:
    """The grid, played once per cell in reading order, with that cell framed and its audio on the track."""
    frames = grid.numpy()
    order = sorted(boxes)

    def turn(cell):
        return (_highlight(f, boxes[cell]) for f in frames), waves[cell]

    return write_av_mp4(path, (turn(cell) for cell in order), fps, sample_rate, len(frames), frames.shape[1:3])

