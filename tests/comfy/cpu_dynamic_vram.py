"""ComfyUI's dynamic-VRAM weight path (comfy-aimdo, ``ModelPatcherDynamic``), run on the CPU.

comfy-aimdo needs a CUDA driver, so its few native entry points are stood in for: a ``ModelVBAR`` whose
allocations are host buffers that persist like VRAM pages, ``vbar_fault`` that always finds the pages resident,
and ``aimdo_to_tensor`` that makes a fresh tensor over that memory on every call (as aimdo's
``__cuda_array_interface__`` wrapper does, so a tensor made under ``torch.inference_mode()`` is an inference
tensor). Everything else is ComfyUI's own code: ``main.py``'s switch (``CoreModelPatcher = ModelPatcherDynamic``,
``aimdo_enabled = True``), ``ModelPatcherDynamic.load`` giving every cast module a vbar slot, ``load_models_gpu``,
and ``comfy.ops.cast_bias_weight``'s vbar branch (``cast_modules_with_vbar`` + ``resolve_cast_module_with_vbar``)
materialising each weight per use and caching it on the module (``_v_weight``) for the next use.

Two CPU-only branches of ComfyUI are steered: ``cast_bias_weight``'s "vbar on a CPU device" copy fallback and
``ModelPatcherDynamic.__new__``'s reroute of CPU models to the classic patcher (both ask ``is_device_cpu``; only
those two callers get False). The load device is ``cpu:0``, which ComfyUI's ``_vbar_get`` treats as a device.
Not covered: aimdo's real eviction under VRAM pressure (a page may be faulted out and re-transferred), pinned host
memory and CUDA streams.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

import torch

LOAD_DEVICE = torch.device("cpu", 0)


class _Alloc:
    def __init__(self, size: int):
        self.size = size
        self.memory = (ctypes.c_uint8 * max(1, size))()
        self.signature = id(self)


class _VBar:
    def __init__(self, size, device_index):
        self.allocs = []

    def alloc(self, size):
        self.allocs.append(_Alloc(size))
        return self.allocs[-1]

    def prioritize(self):
        pass

    def loaded_size(self):
        return sum(a.size for a in self.allocs)

    def free_memory(self, size):
        return 0


def _aimdo_to_tensor(alloc, device):
    return torch.frombuffer(alloc.memory, dtype=torch.uint8)


@contextlib.contextmanager
def dynamic_vram(monkeypatch):
    """Turns dynamic VRAM on the way ``main.py`` does on NVIDIA, with the CPU stand-ins above."""
    import comfy.memory_management
    import comfy.model_management as mm
    import comfy.model_patcher as mp
    import comfy.ops
    import comfy_aimdo.model_vbar as vbar
    import comfy_aimdo.torch as aimdo_torch

    monkeypatch.setattr(vbar, "ModelVBAR", _VBar)
    monkeypatch.setattr(vbar, "vbar_fault", lambda alloc: alloc.signature)
    monkeypatch.setattr(vbar, "vbar_signature_compare", lambda sig, old: old is not None and sig == old)
    monkeypatch.setattr(vbar, "vbar_unpin", lambda alloc: None)
    monkeypatch.setattr(aimdo_torch, "aimdo_to_tensor", _aimdo_to_tensor)
    steered = {comfy.ops.cast_bias_weight.__code__, mp.ModelPatcherDynamic.__new__.__code__}
    is_cpu = mm.is_device_cpu

    def is_device_cpu(device):
        return False if sys._getframe(1).f_code in steered else is_cpu(device)

    monkeypatch.setattr(mm, "is_device_cpu", is_device_cpu)
    monkeypatch.setattr(comfy.memory_management, "aimdo_enabled", True)
    monkeypatch.setattr(mp, "CoreModelPatcher", mp.ModelPatcherDynamic)
    yield


def dynamic_patcher(model):
    """A ``ModelPatcherDynamic`` over the weights of a loaded MODEL (as the checkpoint loader builds one when
    dynamic VRAM is on)."""
    import comfy.model_patcher as mp

    return mp.ModelPatcherDynamic(model.model, LOAD_DEVICE, torch.device("cpu"), size=model.model_size())
