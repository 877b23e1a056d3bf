"""Reports on the node: what a node has to say, drawn by the pack's web extension (web/ltx23_trainer.js).

A node returns ``io.NodeOutput(..., ui=report_ui(text, counts=..., problems=...))``. The front end receives
``{"ltx23_report": [payload]}`` in its ``executed`` event and the extension draws a compact panel on that node:
the verdict line, then the counts, then each problem with its fix, an optional score table, and the full text
(scrolling) under "details". It does not rely on how the front end treats ``ui.text``, and it works for any node
class (of this pack or another) that returns the key, so new nodes get it by calling ``report_ui``.

Payload fields (all optional except ``text``):

* ``text``: the full report, shown scrolled under "details" (also the node's ``report`` output in most nodes).
* ``verdict``: one line in words, shown first and coloured by ``tone`` ("ok", "warn", "error", "info").
* ``counts``: ``[[label, value, tone], ...]``, shown as chips in the order given (counts first, say the usable ones).
* ``problems``: ``[{"level", "text", "fix"}, ...]``: each problem with what to do about it.
* ``lines``: short facts worth reading without opening the details ("saved as ...").
* ``table``: ``{"columns": [...], "rows": [[...], ...], "highlight": row index or None}``.
* ``keep_images``: the node also returns media under ``images`` (the extension leaves those to the front end).
"""

from __future__ import annotations

import math
from typing import Iterable

UI_KEY = "ltx23_report"
TONES = ("ok", "warn", "error", "info")
_MAX_TEXT = 200_000
"""Characters of the full text sent to the page; a dataset of thousands of files still renders quickly."""


def report_ui(text: str, *, verdict: str | None = None, tone: str = "info", counts: Iterable = (),
              problems: Iterable = (), lines: Iterable[str] = (), table: dict | None = None, **other_ui) -> dict:
    """The ``ui`` dict for ``io.NodeOutput``: the report under ``UI_KEY`` plus any other ui entries
    (``images=...``, ``animated=...``) passed through unchanged."""
    if tone not in TONES:
        raise ValueError(f"tone {tone!r} is not one of {TONES}")
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + f"\n... ({len(text) - _MAX_TEXT} more characters in the node's report output)"
    payload = {
        "text": text,
        "verdict": verdict,
        "tone": tone,
        "counts": [[str(label), _plain(value), t if t in TONES else "info"] for label, value, t in counts],
        "problems": [_problem(p) for p in problems],
        "lines": [str(line) for line in lines],
        "table": _table(table) if table else None,
    }
    return {UI_KEY: [payload], **other_ui}


def problems_of(pairs: Iterable) -> list[dict]:
    """``[(where, Problem), ...]`` (``trainer_core.problems.Problem``) as report problems, errors first."""
    order = {"error": 0, "warning": 1, "info": 2}
    out = [{"level": p.severity, "text": f"{where}: {p.message}" if where else p.message, "fix": p.fix}
           for where, p in pairs]
    return sorted(out, key=lambda p: order.get(p["level"], 3))


def _problem(p) -> dict:
    if isinstance(p, dict):
        return {"level": str(p.get("level", "warning")), "text": str(p.get("text", "")), "fix": p.get("fix") or ""}
    level, text, fix = p
    return {"level": str(level), "text": str(text), "fix": fix or ""}


def _table(table: dict) -> dict:
    return {"columns": [str(c) for c in table["columns"]],
            "rows": [[_plain(v) for v in row] for row in table["rows"]],
            "highlight": table.get("highlight")}


def _plain(value):
    """JSON-safe cell: NaN/inf as text (JSON has no NaN), floats rounded for reading."""
    if isinstance(value, float):
        return f"{value:g}" if not math.isfinite(value) else round(value, 4)
    if value is None or isinstance(value, (int, str, bool)):
        return value
    return str(value)
