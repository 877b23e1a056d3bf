"""LoRA files: ours (loads in ComfyUI's stock LoraLoader and in ltx-pipelines at the same strength) and foreign
ones (ltx-trainer / PEFT, kohya) read back for warm starts and inspection.

Strength: ComfyUI applies ``strength * alpha/rank * B@A`` and reads alpha from ``<module>.alpha`` (1.0 scale when
absent); ltx-pipelines ignores alpha and applies ``strength * B@A``. Writing B with alpha/rank already multiplied
in, and ``alpha = rank``, makes both apply the delta the trainer learned.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import torch

from ..atomic import atomic_path
from ..diskspace import tensor_bytes

PACK_NAME = "ComfyUI-LTX23-LoRA-Trainer"
COMFY_PREFIX = "diffusion_model."
# Prefixes other trainers put before the module path; ComfyUI only loads ``diffusion_model.``.
_FOREIGN_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.")
_PAIR_SUFFIXES = (
    (".lora_A.weight", ".lora_B.weight"),
    (".lora_down.weight", ".lora_up.weight"),
    (".lora_A.default.weight", ".lora_B.default.weight"),
)


class NonFiniteLoraError(ValueError):
    """A LoRA holding NaN or Inf: ComfyUI would load it and render black frames, so it is never written."""


def check_finite(weights: dict[str, tuple[torch.Tensor, torch.Tensor]], dtype: torch.dtype | None = None) -> None:
    """Raise ``NonFiniteLoraError`` naming every module whose A or B holds a non-finite value, as stored in
    ``dtype`` (a value finite in fp32 may overflow a narrower type)."""
    bad = []
    for name, (A, B) in weights.items():
        for label, t in (("lora_A", A), ("lora_B", B)):
            t = t.detach()
            if dtype is not None:
                t = t.to(dtype)
            count = int((~torch.isfinite(t)).sum())
            if count:
                bad.append(f"{name}.{label} ({count} of {t.numel()} values NaN/Inf)")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteLoraError(
            f"refusing to save a LoRA with non-finite weights (it would render black video): {shown}. "
            "Training diverged: lower the learning rate, keep gate projections (to_gate_logits) out of the "
            "targets, and resume from an earlier checkpoint.")


def comfy_state_dict(weights: dict[str, tuple[torch.Tensor, torch.Tensor]],
                     dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """``{module: (A, B_scaled)}`` as ComfyUI LoRA keys (what ``comfy.sd.load_lora_for_models`` takes).
    Which adapters to leave out (never trained, audio branch) is ``lora_card.filter_weights``'s decision."""
    tensors = {}
    for name, (A, B) in weights.items():
        key = COMFY_PREFIX + name
        tensors[f"{key}.lora_A.weight"] = A.detach().to("cpu", dtype).contiguous()
        tensors[f"{key}.lora_B.weight"] = B.detach().to("cpu", dtype).contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(A.shape[0]))
    return tensors


def save_comfy_lora(path: str | os.PathLike, weights: dict[str, tuple[torch.Tensor, torch.Tensor]],
                    metadata: dict[str, str], dtype: torch.dtype = torch.bfloat16) -> dict:
    """Write ``{module: (A, B_scaled)}`` (delta W = B_scaled @ A) as a ComfyUI LoRA, atomically.
    Returns a summary: modules written, bytes on disk."""
    from safetensors.torch import save_file

    if not weights:
        raise ValueError("no LoRA module to save: the weights are empty")
    check_finite(weights, dtype)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    state = comfy_state_dict(weights, dtype)
    with atomic_path(path, size_hint=tensor_bytes(state) + 256 * len(state) + 4096) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return {"path": str(path), "modules": len(weights), "bytes": os.path.getsize(path)}


@dataclasses.dataclass
class LoraFile:
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    """``{module path: (A, B_scaled)}``, delta W = B_scaled @ A at strength 1 (as ComfyUI applies it)."""
    metadata: dict[str, str]
    source_format: str
    """"ltx23-trainer", "peft" (ltx-trainer and other PEFT savers) or "kohya"."""
    rank: int
    path: str | None = None
    """Where the weights live on disk, when they do."""


def read_lora(path: str | os.PathLike) -> LoraFile:
    """Read ours, ltx-trainer's (``lora_weights_step_*.safetensors``) or kohya-style LoRA files.

    B is returned with the strength ComfyUI would apply baked in (alpha/rank when an alpha is stored, 1.0 when not),
    so two files that act the same in ComfyUI read back the same.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        raw = {k: fh.get_tensor(k) for k in fh.keys()}
    pairs, alphas = {}, {}
    kohya = False
    for key, tensor in raw.items():
        if key.endswith(".alpha"):
            alphas[_module_path(key[: -len(".alpha")])] = float(tensor.float().item())
            continue
        for a_suffix, b_suffix in _PAIR_SUFFIXES:
            if key.endswith(a_suffix):
                base = key[: -len(a_suffix)]
                if base + b_suffix not in raw:
                    raise ValueError(f"{path}: {key} has no matching {b_suffix} tensor; the file is incomplete")
                kohya |= a_suffix.startswith(".lora_down")
                pairs[_module_path(base)] = (tensor, raw[base + b_suffix])
                break
    if not pairs:
        raise ValueError(f"{path}: no LoRA A/B (or down/up) weight pairs found; is this a LoRA file?")
    weights = {}
    for name, (A, B) in pairs.items():
        scale = alphas[name] / A.shape[0] if name in alphas else 1.0
        weights[name] = (A.float(), B.float() * scale)
    ranks = {A.shape[0] for A, _ in weights.values()}
    fmt = "ltx23-trainer" if metadata.get("pack") == PACK_NAME else ("kohya" if kohya else "peft")
    return LoraFile(weights=weights, metadata=metadata, source_format=fmt, rank=max(ranks), path=str(path))


def _module_path(key: str) -> str:
    for prefix in _FOREIGN_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    if key.startswith("lora_unet_"):
        # kohya flattens dots to underscores; block paths are unambiguous to restore.
        return _unflatten_kohya(key[len("lora_unet_"):])
    return key


def _unflatten_kohya(flat: str) -> str:
    path = re.sub(r"transformer_blocks_(\d+)_", r"transformer_blocks.\1.", flat)
    path = re.sub(r"_(to_q|to_k|to_v|to_gate_logits)$", r".\1", path)
    path = re.sub(r"_to_out_0$", ".to_out.0", path)
    path = re.sub(r"_net_0_proj$", ".net.0.proj", path)
    return re.sub(r"_net_2$", ".net.2", path)



def lora_metadata(*, base_model_version: str, rank: int, alpha: float, targets, modules: int, trigger: str,
                  steps: int, recipe: str, dataset_fingerprint: str, buckets=(), extra: dict | None = None) -> dict:
    from .. import __version__

    meta = {
        "pack": PACK_NAME,
        "pack_version": __version__,
        "base_model_family": "ltx",
        "base_model_version": base_model_version,
        "lora_rank": str(rank),
        "lora_alpha": f"{float(alpha):g}",
        "lora_alpha_stored": "rank (alpha/rank baked into lora_B)",
        "lora_targets": json.dumps(list(targets)),
        "lora_modules": str(modules),
        "trigger_word": trigger,
        "training_steps": str(steps),
        "recipe": recipe,
        "dataset_fingerprint": dataset_fingerprint,
        "resolution_buckets": json.dumps(list(buckets)),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    return meta
