"""IC-LoRA reference frames for Latent Precompute: from the dataset's pairs or derived from the clip itself.

ltx-trainer needs a separate ``compute_reference.py`` pass to make control references; here a derived reference is
a precompute option, so a user with only target clips can train a control IC-LoRA (edges -> video, low resolution
-> detail, grayscale -> colour). Either kind is resized to the bucket divided by the downscale factor (ltx-trainer's
``--reference-downscale-factor``: cheaper reference tokens, positions stretched back at training and sampling).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..data.samples import Sample

PAIRS = "dataset pairs"
DERIVED = ("edges", "low resolution", "grayscale", "inverted")
SOURCES = (PAIRS, *DERIVED)


@dataclasses.dataclass(frozen=True)
class ReferenceSpec:
    source: str = PAIRS
    """PAIRS: each sample's reference clip (manifest ``reference_video`` or ``clip.ref.mp4``); otherwise a
    transform of the sample's own frames."""
    downscale_factor: int = 1

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"reference source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.downscale_factor < 1:
            raise ValueError(f"the reference downscale factor must be 1 or more, got {self.downscale_factor}")

    def applies(self, sample: Sample) -> bool:
        return self.source != PAIRS or sample.reference_path is not None

    def key(self) -> str:
        """Part of the media cache key of samples with a reference (the identity of the reference file is already
        in the sample's own key)."""
        return f"reference:{self.source}:{self.downscale_factor}"

    def size(self, sample: Sample) -> tuple[int, int]:
        """(width, height) of the reference frames: the bucket divided by the factor, still 32-aligned."""
        s = self.downscale_factor
        w, h = sample.width, sample.height
        if w % s or h % s or (w // s) % 32 or (h // s) % 32:
            raise ValueError(f"reference downscale factor {s} does not fit sample {sample.sample_id!r}'s bucket "
                             f"{w}x{h}: the reference would be {w / s:g}x{h / s:g}, and both sides must be whole "
                             "multiples of 32. Choose a factor that divides the bucket into multiples of 32 (e.g. "
                             "buckets of 1024x576 allow 2), or change the buckets")
        return w // s, h // s

    def frames(self, sample: Sample, clip_frames: torch.Tensor, load_reference) -> torch.Tensor:
        """``[F, H/s, W/s, 3]`` reference frames in 0..1; ``clip_frames`` are the sample's own ``[F, H, W, 3]``."""
        source = load_reference(sample).float() if self.source == PAIRS else derive(clip_frames, self.source)
        w, h = self.size(sample)
        if source.shape[1:3] == (h, w):
            return source
        resized = F.interpolate(source.permute(0, 3, 1, 2), size=(h, w), mode="area")
        return resized.permute(0, 2, 3, 1).clamp(0, 1)


def derive(frames: torch.Tensor, kind: str) -> torch.Tensor:
    """A control reference made from ``[F, H, W, 3]`` frames in 0..1."""
    if kind == "inverted":
        return 1.0 - frames
    luma = (frames * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
    if kind == "grayscale":
        return luma.expand_as(frames).contiguous()
    x = frames.permute(0, 3, 1, 2)
    if kind == "low resolution":
        h, w = x.shape[2:]
        small = F.interpolate(x, size=(max(1, h // 4), max(1, w // 4)), mode="area")
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)
    if kind == "edges":
        return _edges(luma.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).expand_as(frames).contiguous()
    raise ValueError(f"unknown derived reference {kind!r}; choose one of {', '.join(DERIVED)}")


def _edges(luma: torch.Tensor) -> torch.Tensor:
    """White edges on black: Sobel gradient magnitude of the lightly blurred luma, kept where it exceeds a
    per-frame threshold (a Canny-like map without the hysteresis pass)."""
    blur = torch.tensor([1.0, 2.0, 1.0]) / 4
    kernel = (blur[:, None] * blur[None, :])[None, None]
    smooth = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernel)
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])[None, None]
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, sobel_x), F.conv2d(padded, sobel_x.transpose(2, 3))
    magnitude = (gx ** 2 + gy ** 2).sqrt()
    # 0.2 of the frame's strongest gradient, but never below a floor, so a flat frame stays black.
    threshold = (magnitude.amax(dim=(1, 2, 3), keepdim=True) * 0.2).clamp_min(0.05)
    return (magnitude > threshold).float()
