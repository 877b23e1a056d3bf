"""Training through ComfyUI's dynamic VRAM mode (comfy-aimdo's ``ModelPatcherDynamic``, on by default on NVIDIA).

In that mode a layer's weight is not a parameter the pack can alias: ``comfy.ops.cast_bias_weight`` materialises
it on every use from ComfyUI's own storage, and caches the result on the module for the next use. Whatever ran
first under ``torch.inference_mode()`` (the user's sampling, the trainer's self-check) leaves inference tensors
in that cache, and the first autograd op that saves one for backward fails with "Inference tensors cannot be
saved for backward". ComfyUI's supported per-weight hook, a weight wrapper on the training clone, hands out a
zero-copy normal alias instead whenever autograd could see it. The user's patcher never gets the wrapper, and
under the classic patcher none is added (a wrapper would make it copy every weight per use).
"""

from __future__ import annotations

import torch


def autograd_safe(weight: torch.Tensor) -> torch.Tensor:
    """The weight itself, or outside inference mode a normal alias of the same memory (made through DLPack)."""
    if torch.is_inference_mode_enabled() or not weight.is_inference():
        return weight
    return torch.from_dlpack(weight.detach())


def wrap_cast_weights(patcher) -> int:
    """Adds ``autograd_safe`` to every weight and bias ComfyUI casts per use in ``patcher``'s diffusion model when
    the patcher is dynamic; returns how many were wrapped (0 for the classic patcher)."""
    if not getattr(patcher, "is_dynamic", lambda: False)():
        return 0
    wrapped = 0
    for name, module in patcher.model.named_modules():
        if not name.startswith("diffusion_model.") or not hasattr(module, "comfy_cast_weights"):
            continue
        for param in ("weight", "bias"):
            if getattr(module, param, None) is not None:
                patcher.add_weight_wrapper(f"{name}.{param}", autograd_safe)
                wrapped += 1
    return wrapped
