"""ComfyUI's text encoder as a captioner: ``clip.tokenize(image=...)``, ``clip.generate``, ``clip.decode``.

This is the path of core ``TextGenerate`` (comfy_extras/nodes_textgen.py) with three differences that matter for
captioning many clips:

* frames go in as one ``image`` batch. ComfyUI's Gemma 3 tokenizer resizes the batch and puts it at the single
  ``<image_soft_token>``; the vision tower encodes every frame and the projector yields 256 tokens per frame, in
  order. (Its ``video=`` and ``audio=`` arguments are accepted but ignored for Gemma 3, which has no audio tower.)
* the Gemma tokenizer drops ``min_length`` and left-pads every prompt to 1024 tokens, and ``generate`` attends
  to that padding. The padding is removed before generating: less work, and the model sees only the prompt.
* the encoder stays loaded between clips (ComfyUI's ``load_models_gpu`` keeps it until memory is needed), so
  Latent Precompute reuses the same loaded copy; precompute unloads it before training.
"""

from __future__ import annotations

import inspect

import torch

END_OF_TURN = 106
"""Gemma's ``<end_of_turn>``: ``generate`` stops on it, so its presence means the caption was finished."""
PAD = 0

# Images first, then the instruction, as Gemma 3 is prompted (and as core's LTX2 image prompt does).
_TEMPLATE = "<start_of_turn>user\n\n<image_soft_token>\n\n{prompt}<end_of_turn>\n<start_of_turn>model\n"


def _inner_tokenizer(clip):
    tokenizer = getattr(clip, "tokenizer", None)
    name = getattr(tokenizer, "clip", None)
    return getattr(tokenizer, name, tokenizer) if isinstance(name, str) else tokenizer


def check_clip(clip) -> None:
    """Fails with the fix when ``clip`` cannot caption (no text generation or no vision input)."""
    model = getattr(clip, "cond_stage_model", None)
    if model is None or not hasattr(model, "generate") or not hasattr(clip, "decode"):
        raise ValueError("This CLIP cannot generate text. Connect the LTX-2.3 text encoder (Gemma 3 12B, from "
                         "'LTXV Audio Text Encoder Loader' or a checkpoint that includes it).")
    tokenizer = _inner_tokenizer(clip)
    if "image" not in inspect.signature(tokenizer.tokenize_with_weights).parameters:
        raise ValueError(f"This text encoder ({type(model).__name__}) takes no images, so it cannot see the clips. "
                         "Connect the LTX-2.3 text encoder (Gemma 3 12B with its vision tower).")


def _strip_padding(tokens: dict) -> dict:
    out = {}
    for key, batches in tokens.items():
        out[key] = []
        for batch in batches:
            start = 0
            while start < len(batch) and isinstance(batch[start][0], int) and batch[start][0] == PAD:
                start += 1
            out[key].append(batch[start:])
    return out


class ComfyCaptioner:
    """Callable for ``trainer_core.data.captioning.caption_dataset``."""

    can_hear = False
    """ComfyUI's LTX-2.3 encoder is Gemma 3, which takes images only."""

    def __init__(self, clip, temperature: float = 0.7, top_k: int = 64, top_p: float = 0.95, min_p: float = 0.05,
                 repetition_penalty: float = 1.05):
        check_clip(clip)
        self.clip = clip
        self.sampling = dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                             repetition_penalty=repetition_penalty)

    def __call__(self, prompt: str, frames: torch.Tensor, max_tokens: int, seed: int) -> tuple[str, bool]:
        tokens = self.clip.tokenize(_TEMPLATE.format(prompt=prompt), image=frames.float().clamp(0, 1), min_length=1)
        ids = self.clip.generate(_strip_padding(tokens), max_length=max_tokens, seed=seed, **self.sampling)
        finished = bool(ids) and ids[-1] == END_OF_TURN
        return self.clip.decode([i for i in ids if i != END_OF_TURN]), finished


def token_counter(clip):
    """Counts a caption's tokens the way precompute encodes it (BOS + caption, padding not counted)."""
    def count(text: str) -> int:
        tokens = clip.tokenize(text)
        return max(sum(1 for t in batch if not (isinstance(t[0], int) and t[0] == PAD))
                   for batches in tokens.values() for batch in batches)
    return count
