"""Validation sweep grid: labelled cells assembled into one video, written as mp4."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch



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


def grid_layout(height: int, width: int, rows: int, cols: int, max_side: int = 3840) -> dict:
    """Pixel geometry of ``assemble_grid``'s output for samples of ``height`` x ``width``: cell size, label column
    width, header height, font size and the grid's (even) size."""
    ch, cw = grid_cell_size(height, width, rows, cols, max_side)
    size = max(9, min(16, ch // 5))
    label_w = max(160, cw)
    header_h = (size + 9) // 2 * 2
    total_h, total_w = header_h + rows * ch, label_w + cols * cw
    return {"cell_h": ch, "cell_w": cw, "font": size, "label_w": label_w, "header_h": header_h,
            "height": total_h + total_h % 2, "width": total_w + total_w % 2}


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
    layout = grid_layout(first.shape[1], first.shape[2], n_rows, n_cols, max_side)
    ch, cw, size = layout["cell_h"], layout["cell_w"], layout["font"]
    label_w, header_h, height, width = layout["label_w"], layout["header_h"], layout["height"], layout["width"]
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
