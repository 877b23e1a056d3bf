"""What the Frame Trimmer hands to Latent Precompute: one trimmed, bucketed training sample.

A sample is a recipe, not decoded frames: the source file, the window in it, the output size and the caption.
Precompute decodes it once (``trainer_core.data.media.load_sample_frames``) and caches the latents under
``Sample.cache_key()``, so the key must change whenever anything that changes the pixels or the caption does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json


@dataclasses.dataclass(frozen=True)
class Sample:
    sample_id: str
    """Stable, human-readable id: the item's path relative to the dataset root, plus ``#wN`` for window N."""
    media_path: str
    """Absolute path of the source clip or image."""
    media_identity: str
    """Content identity of the source file (size, mtime and a hash of its head and tail), from the loader."""
    kind: str
    """"video" or "image"."""
    caption: str
    """The caption the model is trained on, trigger word already inserted."""
    width: int
    height: int
    frames: int
    """Output size: width and height multiples of 32, frames 8n+1 (1 for images)."""
    fps: float
    """Frame rate of the output frames (source fps unless the user resampled); LTX uses it in its RoPE positions."""
    start_time: float
    """Seconds into the source where the window starts; frame i is the source frame shown at start_time + i/fps."""
    resize_mode: str = "cover_center_crop"
    reference_path: str | None = None
    """IC-LoRA reference clip for this sample, decoded with the same window and size."""
    reference_identity: str | None = None

    @property
    def bucket(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"

    def cache_key(self) -> str:
        """Hash of everything that changes the decoded pixels or the caption."""
        fields = dataclasses.asdict(self)
        fields.pop("sample_id")
        fields.pop("media_path")
        fields.pop("reference_path")
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:32]
