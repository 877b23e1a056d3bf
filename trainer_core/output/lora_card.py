"""What a saved LoRA says about itself, and what any LoRA file can tell about the base model it was trained for.

Run card: the safetensors metadata the pack writes (``run_card``): base model family/version and checkpoint,
rank/alpha/targets, trigger, steps, buckets, fps, dataset fingerprint, recipe, loss at save, recommended strength
and pack version. All values are strings (a safetensors rule); lists and numbers are JSON.

Base inference (``infer_base``, ``check_against_model``): LTX-2 LoRAs produce garbage on LTX-2.3 (new VAE latent
space, no conversion possible) and nothing else warns about it. What can be told, strongest first:

1. Our metadata ``base_model_version``: authoritative.
2. Other tools' metadata naming a base (``ss_base_model_version``, ``modelspec.architecture``, a checkpoint file
   name such as ``ltx-2-19b-dev`` or ``ltx-2.3-22b-dev``).
3. Keys only one version has: ``to_gate_logits`` and ``prompt_adaln_single`` (gated attention and
   cross-attention AdaLN: 2.3 only), text-connector blocks 2..7 (2.3 has 8 connector layers, 2.0 has 2),
   ``caption_projection`` in the transformer (2.0 only).
4. Full-size widths: a text-connector width of 3840 is LTX-2, 4096 is LTX-2.3; a 2048-wide video stream without
   audio modules is LTX-Video 0.9.
5. Against a loaded model: a module the model does not have, or a shape it does not have, means another base,
   whatever the rest says.

Not detectable: a foreign LoRA on the usual attention/feed-forward targets without metadata. The DiT blocks of
LTX-2 (19B) and LTX-2.3 (22B) have the same names and shapes (attn2.to_k reads 4096 wide in both: 2.0 projects
captions to 4096 inside the DiT), so such a file is reported as "LTX-2.x, version unknown".
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import torch

from .lora_file import PACK_NAME

LTX20, LTX23, LTX25, LTXV09 = "ltx-2.0", "ltx-2.3", "ltx-2.5", "ltxv-0.9"
VERSION_NAMES = {LTX20: "LTX-2 (19B)", LTX23: "LTX-2.3 (22B)", LTX25: "LTX-2.5", LTXV09: "LTX-Video 0.9"}

LORA_EXTENSION = ".safetensors"

# Metadata keys other trainers use to name the base model or its checkpoint.
_FOREIGN_BASE_KEYS = ("base_model_version", "modelspec.architecture", "ss_base_model_version", "ss_sd_model_name",
                      "base_model", "model_version", "ss_base_model", "base_checkpoint")
_VERSION_PATTERNS = (
    # Most specific first: "ltx-2" is a prefix of the others.
    (LTX23, re.compile(r"ltx[-_ .]?(video[-_ .]?)?2[._-]?3(?!\d)|\b22b\b")),
    (LTX25, re.compile(r"ltx[-_ .]?(video[-_ .]?)?2[._-]?5(?!\d)")),
    (LTXV09, re.compile(r"ltx[-_ .]?(video[-_ .]?|v[-_ .]?)?0[._-]?9")),
    (LTX20, re.compile(r"ltx[-_ .]?(video[-_ .]?)?2(\.0)?(?![.\d])|\b19b\b")),
)
_BLOCK = re.compile(r"^transformer_blocks\.(\d+)\.")
_LTX_BLOCK_PART = re.compile(r"^transformer_blocks\.\d+\.(attn1|attn2|ff|audio_attn1|audio_attn2|audio_ff|"
                             r"audio_to_video_attn|video_to_audio_attn)\.")
_CONNECTOR = re.compile(r"^(audio_|video_)?embeddings_connector\.transformer_1d_blocks\.(\d+)\.")
_CONNECTOR_WIDTHS = {3840: LTX20, 4096: LTX23}
_LTXV09_WIDTH = 2048


def normalize_version(text: str) -> str | None:
    """``"ltx-2.3"``, ``"LTX-2.3 (22B)"``, ``"ltx-2.3-22b-dev.safetensors"`` ... -> ``"ltx-2.3"``; None if unknown."""
    text = str(text).strip().lower()
    for version, pattern in _VERSION_PATTERNS:
        if pattern.search(text):
            return version
    return None


# -- which adapters to keep ------------------------------------------------------------------------------------

def is_audio_module(name: str) -> bool:
    """Modules that read or write the audio stream: audio self/cross-attention and FFN, both audio<->video
    attentions, and audio top-level layers. Without an audio latent at inference none of them runs."""
    return any(part.startswith(("audio_", "av_ca_")) or part in ("video_to_audio_attn", "audio_to_video_attn")
               or "_a2v_" in part or "_v2a_" in part for part in name.split("."))


def is_untrained(A: torch.Tensor, B: torch.Tensor) -> bool:
    """An adapter whose delta B @ A is exactly zero. PEFT-style init sets B = 0 (ComfyUI's trainer sets the down
    matrix to 0), and an optimizer step on a module that took no part in the forward leaves it there."""
    return not torch.any(B) or not torch.any(A)


@dataclasses.dataclass(frozen=True)
class FilterResult:
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    dropped_untrained: tuple[str, ...]
    dropped_audio: tuple[str, ...]

    def summary(self) -> str:
        parts = [f"{len(self.weights)} modules kept"]
        if self.dropped_untrained:
            parts.append(f"{len(self.dropped_untrained)} never trained dropped")
        if self.dropped_audio:
            parts.append(f"{len(self.dropped_audio)} audio-branch dropped")
        return ", ".join(parts)


def filter_weights(weights: dict[str, tuple[torch.Tensor, torch.Tensor]], *, drop_untrained: bool = True,
                   keep_audio: bool = True) -> FilterResult:
    kept, untrained, audio = {}, [], []
    for name, (A, B) in weights.items():
        if not keep_audio and is_audio_module(name):
            audio.append(name)
        elif drop_untrained and is_untrained(A, B):
            untrained.append(name)
        else:
            kept[name] = (A, B)
    if not kept:
        why = "every adapter is zero (the LoRA never trained)" if untrained else "only audio modules are in it"
        raise ValueError(f"nothing left to save: {why}. Turn off 'drop_untrained' / 'keep_audio' filters, or check "
                         "that training ran steps on the modules you want")
    return FilterResult(kept, tuple(untrained), tuple(audio))


# -- run card ----------------------------------------------------------------------------------------------------

def run_card(training_metadata: dict[str, str], *, weights: dict[str, tuple[torch.Tensor, torch.Tensor]],
             base_model_version: str | None = None, base_checkpoint: str | None = None, fps: float | None = None,
             loss_at_save: float | None = None, recommended_strength: float | None = None,
             strength_source: str | None = None, sweep_scores: dict | None = None, saved_dtype: str = "bf16",
             filtered: FilterResult | None = None) -> dict[str, str]:
    """Metadata for a saved LoRA: the trainer's metadata, completed and corrected by what is known at save time.

    Values given here win over the trainer's (the MODEL connected at save time is the base the user means). Keys
    that are unknown are left out rather than written as placeholders, so readers can tell "absent" from "empty".
    """
    from .. import __version__

    meta = {k: str(v) for k, v in training_metadata.items()}
    ranks = sorted({A.shape[0] for A, _ in weights.values()})
    meta.update({
        "pack": PACK_NAME,
        "pack_version": __version__,
        "base_model_family": "ltx",
        "lora_rank": str(ranks[-1]) if len(ranks) == 1 else json.dumps(ranks),
        # B carries alpha/rank and every module stores alpha = rank, so ComfyUI and ltx-pipelines agree.
        "lora_alpha_stored": "rank (alpha/rank baked into lora_B)",
        "lora_modules": str(len(weights)),
        "saved_dtype": saved_dtype,
        "branches": "video+audio" if any(is_audio_module(n) for n in weights) else "video",
    })
    meta.setdefault("lora_targets", json.dumps(sorted({_target_kind(n) for n in weights})))
    if base_model_version:
        meta["base_model_version"] = base_model_version
    if base_checkpoint:
        meta["base_checkpoint"] = os.path.basename(base_checkpoint)
    if fps is not None:
        meta["fps"] = f"{float(fps):g}"
    loss = loss_at_save if loss_at_save is not None else _float_or_none(meta.get("loss_ema"))
    if loss is not None:
        meta["loss_at_save"] = f"{loss:.6g}"
    if recommended_strength is not None:
        meta["recommended_strength"] = f"{recommended_strength:g}"
        meta["recommended_strength_source"] = strength_source or "validation sweep"
    if sweep_scores:
        meta["validation_sweep"] = json.dumps(sweep_scores, sort_keys=True)
    if filtered is not None and (filtered.dropped_untrained or filtered.dropped_audio):
        meta["dropped_modules"] = json.dumps({"untrained": len(filtered.dropped_untrained),
                                              "audio": len(filtered.dropped_audio)})
    return meta


def _target_kind(name: str) -> str:
    # "transformer_blocks.3.attn1.to_q" -> "attn1.to_q": the pattern a user would write as a target.
    return _BLOCK.sub("", name)


def _float_or_none(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# -- numbered file names -----------------------------------------------------------------------------------------

def split_prefix(prefix: str) -> tuple[str, str]:
    prefix = prefix.strip().replace("\\", "/").strip("/") or "ltx23_lora"
    if prefix.endswith(LORA_EXTENSION):
        prefix = prefix[: -len(LORA_EXTENSION)]
    parts = [p for p in prefix.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"file name prefix {prefix!r} climbs out of the loras folder ('..'); use a name like "
                         "'ltx23/my_style'")
    return "/".join(parts[:-1]), parts[-1]


def numbered_name(folder: str | os.PathLike, prefix: str) -> str:
    """The next free ``<prefix>_00001.safetensors`` (relative to ``folder``), counting past the highest number
    already there so that deleted files never make a new LoRA take an old LoRA's name."""
    sub, stem = split_prefix(prefix)
    directory = Path(folder, sub)
    pattern = re.compile(re.escape(stem) + r"_(\d{5,})" + re.escape(LORA_EXTENSION) + "$")
    numbers = [int(m.group(1)) for f in (os.listdir(directory) if directory.is_dir() else ())
               if (m := pattern.match(f))]
    name = f"{stem}_{max(numbers, default=0) + 1:05d}{LORA_EXTENSION}"
    return f"{sub}/{name}" if sub else name


def claim_numbered(staged: str | os.PathLike, folder: str | os.PathLike, prefix: str) -> str:
    """Moves a finished file to the next free numbered name without ever replacing an existing file.

    A hard link fails if the name exists, so two savers racing for one number both succeed under different
    numbers. File systems without hard links fall back to check-then-rename, which is still atomic per file.
    Returns the name relative to ``folder``.
    """
    staged = Path(staged)
    for _ in range(1000):
        name = numbered_name(folder, prefix)
        target = Path(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(staged, target)
        except FileExistsError:
            continue
        except OSError:
            if target.exists():
                continue
            os.replace(staged, target)
            return name
        os.unlink(staged)
        return name
    raise RuntimeError(f"could not find a free file name for {prefix!r} in {folder}; choose another prefix")


# -- base inference -----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class BaseInference:
    version: str | None
    """``ltx-2.3``, ``ltx-2.0``, ``ltx-2.5``, ``ltxv-0.9``, or None when nothing in the file says."""
    source: str
    """"metadata (this pack)", "metadata (other tool)", "keys", "shapes", or "none"."""
    is_ltx: bool
    evidence: list[str]
    conflicts: list[str]

    @property
    def label(self) -> str:
        if self.version:
            return VERSION_NAMES[self.version]
        return "LTX-2.x, version unknown" if self.is_ltx else "not an LTX LoRA"


def lora_shapes(weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, tuple[int, int]]:
    """``{module: (out_features, in_features)}`` of the weights each adapter changes."""
    return {name: (B.shape[0], A.shape[1]) for name, (A, B) in weights.items()}


def _from_keys(shapes: dict[str, tuple[int, int]]) -> tuple[set[str], list[str]]:
    found, evidence = set(), []

    def note(version, why):
        found.add(version)
        evidence.append(f"{why} -> {VERSION_NAMES[version]}")

    gates = [n for n in shapes if n.endswith("to_gate_logits")]
    if gates:
        note(LTX23, f"{len(gates)} adapters on to_gate_logits (gated attention exists only in LTX-2.3)")
    prompt_adaln = [n for n in shapes if n.split(".")[0] in ("prompt_adaln_single", "audio_prompt_adaln_single")]
    if prompt_adaln:
        note(LTX23, "adapters on prompt_adaln_single (cross-attention AdaLN exists only in LTX-2.3)")
    captions = [n for n in shapes if n.split(".")[0] in ("caption_projection", "audio_caption_projection")]
    if captions:
        note(LTX20, "adapters on the transformer's caption_projection (LTX-2.3 moved it into the text encoder)")
    connector_layers = [int(m.group(2)) for n in shapes if (m := _CONNECTOR.match(n))]
    if connector_layers and max(connector_layers) >= 2:
        note(LTX23, f"text-connector layer {max(connector_layers)} (LTX-2 has 2 connector layers, LTX-2.3 has 8)")
    for name, (_, width) in shapes.items():
        m = _CONNECTOR.match(name)
        if m and m.group(1) != "audio_" and name.endswith("attn1.to_q") and width in _CONNECTOR_WIDTHS:
            note(_CONNECTOR_WIDTHS[width], f"video text-connector width {width}")
            break
    block_q = [w for n, (_, w) in shapes.items() if _LTX_BLOCK_PART.match(n) and n.endswith(".attn1.to_q")]
    has_audio = any(is_audio_module(n) for n in shapes)
    if block_q and block_q[0] == _LTXV09_WIDTH and not has_audio:
        note(LTXV09, "video stream 2048 wide without audio modules")
    return found, evidence


def infer_base(weights_or_shapes: dict, metadata: dict[str, str] | None = None) -> BaseInference:
    """Which base a LoRA file was trained for, from its metadata and its keys/shapes (see the module doc)."""
    shapes = weights_or_shapes
    if shapes and isinstance(next(iter(shapes.values()))[0], torch.Tensor):
        shapes = lora_shapes(weights_or_shapes)
    metadata = metadata or {}
    is_ltx = any(_LTX_BLOCK_PART.match(n) or _CONNECTOR.match(n) for n in shapes)
    key_versions, evidence = _from_keys(shapes)
    conflicts = []
    if len(key_versions) > 1:
        conflicts.append("keys point to more than one base: " + ", ".join(sorted(key_versions)))

    ours = metadata.get("pack") == PACK_NAME and normalize_version(metadata.get("base_model_version", ""))
    if ours:
        evidence.insert(0, f"metadata base_model_version={metadata['base_model_version']!r} (written by this pack)")
        conflicts += [f"metadata says {VERSION_NAMES[ours]} but {e}" for e in evidence[1:]
                      if not e.endswith(VERSION_NAMES[ours])]
        return BaseInference(ours, "metadata (this pack)", True, evidence, conflicts)

    for key in _FOREIGN_BASE_KEYS:
        version = normalize_version(metadata.get(key, "")) if metadata.get(key) else None
        if version:
            evidence.insert(0, f"metadata {key}={metadata[key]!r}")
            if key_versions and version not in key_versions:
                conflicts.append(f"metadata {key} says {VERSION_NAMES[version]}, keys say "
                                 + ", ".join(VERSION_NAMES[v] for v in sorted(key_versions)))
            return BaseInference(version, "metadata (other tool)", True, evidence, conflicts)

    if len(key_versions) == 1:
        (version,) = key_versions
        return BaseInference(version, "keys", True, evidence, conflicts)
    if is_ltx and not key_versions:
        evidence.append("only attention/feed-forward adapters without metadata: LTX-2 and LTX-2.3 blocks have the "
                        "same names and shapes, so the file cannot tell which it was trained for")
    if not is_ltx:
        evidence.append("no transformer_blocks.N.attn1/attn2/ff/audio_* modules: the keys are not LTX-2.x's")
    return BaseInference(None, "none", is_ltx, evidence, conflicts)


@dataclasses.dataclass
class Compatibility:
    status: str
    """"match", "mismatch" (certainly another base), or "unknown" (fits the model; the base cannot be told)."""
    lora: BaseInference
    model_version: str
    missing: list[str]
    wrong_shape: list[str]
    message: str

    @property
    def is_mismatch(self) -> bool:
        return self.status == "mismatch"


def check_against_model(lora: BaseInference, shapes: dict[str, tuple[int, int]],
                        model_shapes: dict[str, tuple[int, ...]], model_version: str,
                        lora_name: str = "this LoRA") -> Compatibility:
    """Compares a LoRA with a loaded model: its stated/inferred base, and each module's existence and shape."""
    missing = sorted(n for n in shapes if n not in model_shapes)
    wrong = sorted(n for n, s in shapes.items() if n in model_shapes and tuple(model_shapes[n][:2]) != tuple(s))
    model_label = VERSION_NAMES.get(model_version, model_version)
    problems = []
    if lora.version and lora.version != model_version:
        problems.append(f"{lora_name} was trained for {lora.label} ({lora.source}) but the model is {model_label}")
    if missing:
        problems.append(f"{len(missing)} of its modules do not exist in the model (e.g. {missing[0]})")
    if wrong:
        n = wrong[0]
        problems.append(f"{len(wrong)} modules have other shapes than the model's (e.g. {n}: LoRA "
                        f"{tuple(shapes[n])}, model {tuple(model_shapes[n][:2])})")
    if problems:
        fix = ("LTX-2 LoRAs produce garbage on LTX-2.3 (its VAE latent space is new; there is no conversion): "
               "retrain the LoRA on LTX-2.3, or load the base it was made for"
               if model_version == LTX23 and lora.version in (LTX20, None) else
               f"load the base model it was made for, or retrain it on {model_label}")
        return Compatibility("mismatch", lora, model_version, missing, wrong,
                             "BASE MODEL MISMATCH: " + "; ".join(problems) + f". {fix}.")
    if lora.version is None:
        return Compatibility("unknown", lora, model_version, missing, wrong,
                             f"{lora_name}: the base it was trained for cannot be told ({lora.label}); its modules fit "
                             f"{model_label}. If it was trained on LTX-2 (before March 2026) it will produce garbage "
                             "on LTX-2.3: check where it came from.")
    return Compatibility("match", lora, model_version, missing, wrong,
                         f"{lora_name} was trained for {lora.label} ({lora.source}); the model is {model_label}.")


CARD_KEYS = ("base_checkpoint", "trigger_word", "training_steps", "recipe", "strategy", "reference_downscale_factor",
             "reference_temporal_scale_factor", "lora_targets", "resolution_buckets", "fps", "learning_rate",
             "lr_schedule", "lr_warmup_steps", "loss_at_save", "recommended_strength", "recommended_strength_source",
             "dataset_fingerprint", "pack_version")
"""Run-card keys a report shows, in this order (the dataset fingerprint as the Dataset Loader prints it)."""


def describe(lora: BaseInference, metadata: dict[str, str],
             weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> str:
    """A human-readable report of a LoRA file: base, evidence, and the run card when there is one."""
    shapes = lora_shapes(weights)
    ranks = sorted({A.shape[0] for A, _ in weights.values()})
    lines = [f"Base: {lora.label}  [{lora.source}]"]
    lines += [f"  - {e}" for e in lora.evidence]
    lines += [f"  ! {c}" for c in lora.conflicts]
    blocks = sorted({int(m.group(1)) for n in shapes if (m := _BLOCK.match(n))})
    lines.append(f"Modules: {len(shapes)} ({sum(is_audio_module(n) for n in shapes)} audio-branch), "
                 f"blocks {blocks[0]}..{blocks[-1]}" if blocks else f"Modules: {len(shapes)}")
    if ranks:
        lines.append(f"Rank: {ranks[-1] if len(ranks) == 1 else ranks}")
    card = [(k, metadata[k][:12] if k == "dataset_fingerprint" else metadata[k]) for k in CARD_KEYS
            if metadata.get(k)]
    if card:
        lines.append("Run card:")
        lines += [f"  {k}: {v}" for k, v in card]
    elif metadata:
        lines.append("Metadata: " + ", ".join(sorted(metadata))[:400])
    else:
        lines.append("Metadata: none (ltx-trainer and most other tools write none)")
    return "\n".join(lines)
