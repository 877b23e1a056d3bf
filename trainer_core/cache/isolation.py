"""Per-sample isolation for Latent Precompute: one clip that fails to decode or encode is reported (file, reason,
fix) and left out, and the rest of the dataset is still encoded."""

from __future__ import annotations

import dataclasses

from ..data.media import MediaError
from ..data.samples import Sample

DEFAULT_FIX = ("check that the file plays in a video player; re-export it (for example `ffmpeg -i in.mp4 -c:v libx264 "
               "out.mp4`) or remove it from the dataset, then re-run Latent Precompute")


@dataclasses.dataclass(frozen=True)
class SampleFailure:
    sample_id: str
    path: str
    stage: str
    """"video", "reference" or "audio"."""
    reason: str
    fix: str

    def line(self) -> str:
        return f"{self.sample_id} ({self.path}): {self.stage} failed: {self.reason}. Fix: {self.fix}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def failure(sample: Sample, stage: str, exc: BaseException) -> SampleFailure:
    path = sample.reference_path if stage == "reference" else sample.media_path
    if isinstance(exc, MediaError):
        return SampleFailure(sample.sample_id, exc.path, stage, exc.problem, exc.fix)
    return SampleFailure(sample.sample_id, str(path), stage, f"{type(exc).__name__}: {exc}", DEFAULT_FIX)


def summary_lines(failures: list[SampleFailure], encoded: int) -> list[str]:
    if not failures:
        return []
    lines = [f"FAILED: {len(failures)} sample(s) could not be encoded and are left out; training uses the {encoded} "
             "that were:"]
    return lines + [f"  - {f.line()}" for f in failures]
