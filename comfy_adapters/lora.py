"""LoRA plumbing shared by the Save, Inspector, Loader and Validation Sweep nodes: files in
ComfyUI's ``loras`` folder, the base-model guard against a loaded MODEL, and patching through ComfyUI's own loader.
"""

from __future__ import annotations

import logging
import os

import torch

from ..trainer_core.output import lora_card
from ..trainer_core.output.lora_file import LoraFile, comfy_state_dict, read_lora
from .denoiser import ltx_version

NO_FILE = "none"
log = logging.getLogger(__name__)


def lora_file_names() -> list[str]:
    import folder_paths

    return folder_paths.get_filename_list("loras")


def load_lora_file(name: str) -> LoraFile:
    import folder_paths

    path = folder_paths.get_full_path("loras", name)
    if path is None:
        raise ValueError(f"LoRA file {name!r} is not in ComfyUI's loras folder(s) "
                         f"({', '.join(folder_paths.get_folder_paths('loras'))}); refresh the node list (R) or copy "
                         "the file there")
    try:
        return read_lora(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read LoRA {path}: {exc}") from exc


def resolve_lora(lora: LoraFile | None, lora_name: str | None) -> tuple[LoraFile, str]:
    """The connected LTX23_LORA wins over a file name; returns the LoRA and a name to show in messages."""
    if lora is not None:
        return lora, os.path.basename(lora.path) if lora.path else "the connected LoRA"
    if lora_name and lora_name != NO_FILE:
        return load_lora_file(lora_name), lora_name
    raise ValueError("no LoRA to use: connect an LTX23_LORA (from the trainer) or pick a file in 'lora_name'")


def diffusion_model(model):
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    if dm is None or not hasattr(dm, "transformer_blocks") or not hasattr(dm, "audio_cross_attention_dim"):
        raise ValueError(f"the MODEL input is a {type(dm).__name__}, not an LTX-2.x audio-video model; load the "
                         "LTX-2.3 checkpoint with 'Load Checkpoint' and connect its MODEL")
    return dm


def model_shapes(model) -> dict[str, tuple[int, ...]]:
    """``{module: weight shape}`` of every layer with a 2-D weight (quantized weights report their logical shape)."""
    shapes = {}
    for name, module in diffusion_model(model).named_modules():
        weight = getattr(module, "weight", None)
        shape = tuple(getattr(weight, "shape", ()))
        if len(shape) == 2:
            shapes[name] = shape
    return shapes


def model_version(model) -> str:
    return ltx_version(diffusion_model(model))


def checkpoint_name(model) -> str | None:
    """The file the MODEL was loaded from, when ComfyUI's loader recorded it (checkpoint and diffusion-model
    loaders do, for reloading); None for models built another way."""
    init = getattr(model, "cached_patcher_init", None)
    try:
        path = init[1][0]
    except (TypeError, IndexError):
        return None
    return os.path.basename(path) if isinstance(path, str) else None


def inspect(lora: LoraFile) -> lora_card.BaseInference:
    return lora_card.infer_base(lora.weights, lora.metadata)


def check_base(model, lora: LoraFile, name: str) -> lora_card.Compatibility:
    return lora_card.check_against_model(inspect(lora), lora_card.lora_shapes(lora.weights), model_shapes(model),
                                         model_version(model), name)


def guard(model, lora: LoraFile, name: str, allow_base_mismatch: bool) -> lora_card.Compatibility:
    """Refuses a LoRA made for another base (unless overridden), and says so loudly in the log either way."""
    compat = check_base(model, lora, name)
    if compat.is_mismatch:
        if not allow_base_mismatch:
            raise ValueError(compat.message + " (To apply it anyway, turn on 'allow_base_mismatch'.)")
        log.warning("%s Applied anyway because allow_base_mismatch is on.", compat.message)
    elif compat.status == "unknown":
        log.warning(compat.message)
    return compat


def apply_lora(model, lora: LoraFile, strength: float, name: str, allow_partial: bool = False):
    """A patched clone of ``model`` via ComfyUI's own ``load_lora_for_models`` (as LoraLoaderModelOnly does).

    Every module must map to a model weight: ComfyUI only logs unmapped keys, and a silently half-applied LoRA is
    worse than an error. ``allow_partial`` (the user overrode the base guard) applies the modules that map.
    """
    import comfy.lora
    import comfy.sd

    if strength == 0:
        return model
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    unmapped = sorted(n for n in lora.weights if f"diffusion_model.{n}" not in key_map)
    if unmapped:
        message = (f"{name}: {len(unmapped)} of its modules do not exist in this model (e.g. {unmapped[0]}); it was "
                   "made for another base model. Inspect it with 'LTX-2.3 LoRA Inspector'")
        if not allow_partial:
            raise ValueError(message)
        log.warning("%s; applying the %d modules that exist.", message, len(lora.weights) - len(unmapped))
        lora = LoraFile({n: w for n, w in lora.weights.items() if n not in unmapped}, lora.metadata,
                        lora.source_format, lora.rank, lora.path)
    lora_sd = comfy_state_dict(lora.weights, dtype=torch.float32)
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora_sd, strength, 0)
    return patched
