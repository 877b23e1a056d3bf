"""IC-LoRA pairs: which reference clip belongs to a training clip, and what is wrong with a pair.

A reference comes from the manifest's ``reference_video`` (or ``ref_media_path``) column, or from the sidecar rule:
``clip.mp4`` pairs with ``clip.ref.mp4`` (any supported extension) next to it. Sidecar references are never
training clips themselves. Every pair problem names the reference file, so the user knows which one to fix.
"""

from __future__ import annotations

from pathlib import Path

from . import media
from ..problems import ERROR, WARNING, Problem

SIDECAR_TAG = ".ref"


def is_sidecar_reference(path: Path) -> bool:
    return Path(path.stem).suffix.lower() == SIDECAR_TAG


def sidecar_reference(path: Path) -> Path | None:
    """``clip.ref.<ext>`` beside ``clip.<ext>``, preferring the clip's own extension."""
    extensions = (path.suffix, *(e for e in media.VIDEO_EXTENSIONS + media.IMAGE_EXTENSIONS if e != path.suffix))
    for ext in extensions:
        candidate = path.with_name(f"{path.stem}{SIDECAR_TAG}{ext}")
        if candidate.is_file():
            return candidate
    return None


def reference_problems(reference: Path, probe_problem: Problem | None, ref: media.MediaInfo | None,
                       clip: media.MediaInfo | None) -> list[Problem]:
    """Problems of one pair: the reference unreadable or missing (error: the pair cannot train), shorter than the
    clip (warning: windows are cut to it), of another aspect ratio (warning: it is stretched onto the clip's
    bucket, which distorts the correspondence the LoRA learns)."""
    name = reference.name
    if probe_problem is not None:
        missing = probe_problem.code == "media_missing"
        return [Problem(ERROR, "reference_missing" if missing else "reference_" + probe_problem.code,
                        f"reference {name}: " + ("not found" if missing else probe_problem.message),
                        f"put {name} at {reference}, or fix the reference path" if missing else probe_problem.fix)]
    if ref is None or clip is None:
        return []
    problems = []
    if clip.kind == "video" and clip.frames > 1 and ref.duration + 0.5 / (ref.fps or 24.0) < clip.duration:
        problems.append(Problem(WARNING, "reference_shorter", f"reference {name} lasts {ref.duration:.2f} s, the "
                                f"clip {clip.duration:.2f} s; training windows are limited to the reference",
                                f"re-export {name} at the clip's full length"))
    clip_aspect, ref_aspect = clip.width / clip.height, ref.width / ref.height
    if abs(clip_aspect - ref_aspect) > 0.02 * clip_aspect:
        problems.append(Problem(WARNING, "reference_aspect", f"reference {name} is {ref.width}x{ref.height}, the "
                                f"clip {clip.width}x{clip.height}: other aspect ratios, so the reference is "
                                "stretched onto the clip's frame", f"re-export {name} with the clip's aspect ratio"))
    return problems
