"""What the Validation Sweep shows on its node and records on the LoRA file it swept.

Rendered from the sweep's result dict generically (``trainer_core.output.sweep_scores`` decides what the scores
mean): a ``verdict`` in the scores wins; otherwise the verdict is the recommended strength, or the first warning
when there is none. The table has one column per key of each ``scores["strengths"]`` row, in their order.
"""

from __future__ import annotations

import dataclasses
import logging

from ..trainer_core.output.card_update import sweep_card, write_card
from .report import report_ui

log = logging.getLogger(__name__)


def record_on_file(lora_file, result: dict):
    """Writes the recommendation into the swept file's run card (files this pack saved only). Returns the LoRA
    with its card as it now is on disk, and what was done, in words, for the report."""
    path = getattr(lora_file, "path", None)
    if not path:
        return lora_file, "Run card: the LoRA has no file, nothing recorded (connect Save Comfy LoRA's 'sweep' input)."
    source = f"validation sweep ({result.get('mode', '?')} mode, {result.get('steps', '?')} steps)"
    card = sweep_card(result.get("recommended"), source, result.get("scores"))
    try:
        written = write_card(path, card)
    except (OSError, ValueError) as exc:
        log.warning("LTX-2.3 Validation Sweep: could not record the result in %s: %s", path, exc)
        return lora_file, f"Run card: could not record the result in {path} ({exc}); the scores JSON has it."
    if not written:
        return lora_file, (f"Run card: {path} was not saved by this pack, so it is left unchanged; the scores JSON "
                           "has the result.")
    updated = dataclasses.replace(lora_file, metadata={**lora_file.metadata, **card})
    return updated, f"Run card: recommended strength recorded in {path} (connect 'lora' to the LoRA Inspector)."


def sweep_report_ui(result: dict, text: str, card_note: str, **media) -> dict:
    scores = result.get("scores") or {}
    recommended = result.get("recommended")
    warnings = [str(w) for w in scores.get("warnings") or []]
    if scores.get("verdict"):
        verdict = str(scores["verdict"])
    elif recommended is not None:
        verdict = f"The LoRA has an effect: recommended strength {recommended:g}"
    else:
        verdict = warnings[0] if warnings else "No strength can be recommended"
    tone = "error" if recommended is None else ("warn" if warnings else "ok")
    rows = [r for r in scores.get("strengths") or [] if isinstance(r, dict)]
    columns = list(rows[0]) if rows else []
    highlight = next((i for i, r in enumerate(rows) if recommended is not None and r.get("strength") == recommended),
                     None)
    table = {"columns": [c.replace("_", " ") for c in columns], "rows": [[r.get(c) for c in columns] for r in rows],
             "highlight": highlight} if rows else None
    width, height, frames = (result.get("size") or [None] * 3)[:3]
    return report_ui(
        text, verdict=verdict, tone=tone,
        counts=[("recommended strength", "none" if recommended is None else f"{recommended:g}",
                 "error" if recommended is None else "ok"),
                ("seeds", len(result.get("seeds") or []), "info"), ("strengths", len(rows), "info")],
        problems=[("warning", w, "") for w in warnings if w != verdict],
        lines=[f"{width}x{height}x{frames}, {result.get('mode')} mode, {result.get('steps')} steps", card_note],
        table=table, **media)
