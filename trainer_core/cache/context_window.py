"""One context length for every cached text.

Caption dropout swaps a caption's context for the empty caption's, and batches stack contexts, so every context
must have the empty caption's length: the text encoder's window (ComfyUI pads every caption to at least 1024
tokens; a longer caption comes back longer). A longer context is cut to the window, and the cut is reported; a
shorter one is completed with the empty caption's rows at those positions (what the model reads as padding).
"""

from __future__ import annotations

import dataclasses

import torch

META_KEY = "rows_before_fit"
"""Header field of a text cache file whose context was cut: its length before the cut."""


@dataclasses.dataclass(frozen=True)
class Truncation:
    text: str
    rows: int
    window: int

    def line(self, sample_ids: list[str]) -> str:
        who = ", ".join(sample_ids[:6]) + (f" and {len(sample_ids) - 6} more" if len(sample_ids) > 6 else "")
        what = f"samples {who}" if sample_ids else "a validation prompt"
        return (f"caption of {what} is {self.rows} tokens, longer than the text encoder's window of {self.window}; "
                f"it was cut to {self.window} ({self.text[:60]!r}...). Fix: shorten the caption to keep its end")


def fit_context(context: torch.Tensor, empty: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """``context`` at ``empty``'s length, and its original length when it had to be cut (else None)."""
    window = empty.shape[0]
    if context.shape[0] > window:
        return context[:window], context.shape[0]
    if context.shape[0] < window:
        return torch.cat([context, empty[context.shape[0]:].to(context.dtype)]), None
    return context, None
