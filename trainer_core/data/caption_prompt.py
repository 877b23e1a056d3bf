"""What the Caption Dataset node asks the encoder for one clip (no media or ComfyUI imports: benches use it)."""

from __future__ import annotations

PROMPT_VERSION = 1
"""Bump when the instructions change, so a resumed run does not mix captions from two prompts."""


def build_prompt(*, still: bool, frames: int, duration: float, has_audio: bool, subject: str, can_hear: bool) -> str:
    """The instruction for one clip, in the order LTX-2.3 prompts read: subject, action, scene, camera, sound."""
    lines = [
        "Write the training caption for this " + ("image" if still else "video clip") + " for a text-to-video "
        "model.",
        "One paragraph of plain English in the present tense, no headings, lists or quotation marks around it.",
        "In this order describe: the main subject; what the subject does" + ("" if still else ", in order") +
        "; the setting and lighting; the camera (shot size, angle" + ("" if still else ", movement") + ")"
        + ("" if still else "; the sound") + ".",
    ]
    if subject.strip():
        lines.append(f'Call the main subject exactly "{subject.strip()}", word for word, and do not describe its '
                     "fixed appearance in other words.")
    if not still:
        lines.append(f"The images are {frames} frames taken evenly from a {duration:.1f}-second clip, in order.")
        if not has_audio:
            lines.append("The clip is silent: say nothing about sound.")
        elif not can_hear:
            lines.append("The clip has sound you cannot hear: name only sounds whose source is plainly visible, "
                         "in one short phrase.")
        else:
            lines.append("Describe the sound: speech with its exact words in quotes, music and ambient sounds.")
    return "\n".join(lines)
