"""LoRA adapters attached to a frozen DiT by module-name patterns.

Why not PEFT: PEFT injects by replacing modules inside the model. In ComfyUI the DiT module tree is shared by
every clone of the loaded MODEL, so replacing modules would change the user's model for every other node, and
the ComfyUI backend needs the adapters on ComfyUI's own ``comfy.ops`` Linear layers, whose forward casts and
patches weights itself. Forward hooks add ``scale * B(A(x))`` to any ``nn.Linear`` output without touching the
module, are removed when training ends, and behave the same on the diffusers and ComfyUI backends. The
parametrisation is PEFT's (A Kaiming-uniform, B zero, scale alpha/rank), so files and warm starts are
interchangeable with ltx-trainer's PEFT LoRAs.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# Block-level target presets. The names are the module paths ComfyUI, ltx-core and diffusers share.
_ATTN_PROJ = r"(to_q|to_k|to_v|to_out\.0)"
TARGET_PRESETS = {
    "video_attn": rf"transformer_blocks\.\d+\.attn[12]\.{_ATTN_PROJ}",
    "video_ff": r"transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)",
    "audio_attn": rf"transformer_blocks\.\d+\.audio_attn[12]\.{_ATTN_PROJ}",
    "audio_ff": r"transformer_blocks\.\d+\.audio_ff\.net\.(0\.proj|2)",
    "av_cross_attn": rf"transformer_blocks\.\d+\.(audio_to_video_attn|video_to_audio_attn)\.{_ATTN_PROJ}",
}
DEFAULT_TARGETS = ("video_attn",)
# Gated attention's per-head gate (2.3) feeds a sigmoid; LoRAs on it have come out all-NaN and rendered black video
# (ostris/ai-toolkit#975), and ltx-trainer never targets it. Only a pattern that names the gate selects it.
GATE_MODULE = re.compile(r"(^|\.)to_gate_logits$")


def _matcher(pattern: str):
    """A preset name, ``re:<regex>`` (full match), or a module-path suffix matched on a ``.`` boundary (PEFT's rule,
    so ltx-trainer's ``to_k`` style targets mean the same thing here)."""
    if pattern in TARGET_PRESETS:
        rx = re.compile(TARGET_PRESETS[pattern])
        return lambda name: rx.fullmatch(name) is not None
    if pattern.startswith("re:"):
        rx = re.compile(pattern[3:])
        return lambda name: rx.fullmatch(name) is not None
    return lambda name: name == pattern or name.endswith("." + pattern)


def select_targets(candidates: dict[str, nn.Linear], patterns) -> dict[str, nn.Linear]:
    """The candidate modules matched by any pattern; an unmatched pattern is an error, not a silent no-op.
    Gate projections (``to_gate_logits``) are matched only by a pattern that says ``gate``."""
    chosen = {}
    for pattern in patterns:
        match = _matcher(pattern)
        wants_gates = "gate" in pattern
        hits = {n: m for n, m in candidates.items() if match(n) and (wants_gates or not GATE_MODULE.search(n))}
        if not hits:
            raise ValueError(
                f"LoRA target {pattern!r} matches no module of this model. Use a preset "
                f"({', '.join(TARGET_PRESETS)}), a module-path suffix such as 'attn1.to_q', or 're:<regex>'; "
                f"example module: {next(iter(candidates), '<none>')}")
        chosen.update(hits)
    return dict(sorted(chosen.items(), key=lambda kv: _natural_key(kv[0])))


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class LoraAdapter(nn.Module):
    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, generator=None):
        super().__init__()
        self.rank = rank
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, dtype=torch.float32))
        # PEFT's init: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(in), 1/sqrt(in)); drawn from our generator so a
        # seeded run is reproducible without touching the global RNG.
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.lora_A.copy_(torch.rand(rank, in_features, generator=generator) * 2 * bound - bound)

    def add_to(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``output + scale * B(A x)`` in the activation's dtype: the fp32 masters are cast down (autocast caches
        that cast for the whole forward), never the activations up, and the scaled product accumulates into the
        base layer's output inside one GEMM (``addmm``) instead of a product, a scale and an add."""
        if torch.is_autocast_enabled(x.device.type):
            a, b = self.lora_A, self.lora_B
        else:
            a, b = self.lora_A.to(output.dtype), self.lora_B.to(output.dtype)
            x = x.to(output.dtype)
        h = F.linear(x, a)
        flat = torch.addmm(output.reshape(-1, output.shape[-1]), h.reshape(-1, self.rank), b.t(), alpha=self.scale)
        return flat.view(output.shape)


class LoraSet(nn.Module):
    """The trainable adapters for a set of target modules, plus the hooks that apply them."""

    def __init__(self, targets: dict[str, nn.Linear], rank: int, alpha: float, seed: int = 0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        gen = torch.Generator().manual_seed(seed)
        self.names = list(targets)
        self.rank, self.alpha = rank, float(alpha)
        self.adapters = nn.ModuleList(
            LoraAdapter(m.in_features, m.out_features, rank, alpha, gen) for m in targets.values())
        self._targets = targets
        self._handles = []

    def items(self):
        return zip(self.names, self.adapters)

    @contextmanager
    def attached(self):
        """Hooks on while the block runs; the model is left exactly as it was afterwards."""
        self.attach()
        try:
            yield self
        finally:
            self.detach()

    def attach(self) -> None:
        if self._handles:
            return
        for adapter, module in zip(self.adapters, self._targets.values()):
            self._handles.append(module.register_forward_hook(_hook(adapter)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for a in self.adapters for p in (a.lora_A, a.lora_B)]

    def state(self) -> dict[str, torch.Tensor]:
        """Raw training state (unscaled A and B), keyed ``<module>.lora_A`` / ``<module>.lora_B``."""
        out = {}
        for name, a in self.items():
            out[f"{name}.lora_A"] = a.lora_A.detach().clone()
            out[f"{name}.lora_B"] = a.lora_B.detach().clone()
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = {k for n in self.names for k in (f"{n}.lora_A", f"{n}.lora_B")}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
            raise ValueError(f"LoRA state does not match this run's targets (missing {missing}, unexpected {extra})")
        with torch.no_grad():
            for name, a in self.items():
                a.lora_A.copy_(state[f"{name}.lora_A"])
                a.lora_B.copy_(state[f"{name}.lora_B"])

    def effective_weights(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{module: (A, B_scaled)}`` with the alpha/rank scale baked into B, so ``delta W = B_scaled @ A``."""
        return {name: (a.lora_A.detach(), a.lora_B.detach() * a.scale) for name, a in self.items()}

    def warm_start(self, weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[str]:
        """Initialise from ``{module: (A, B_scaled)}`` (a previous LoRA); returns the modules it did not cover."""
        untouched = []
        with torch.no_grad():
            for name, a in self.items():
                if name not in weights:
                    untouched.append(name)
                    continue
                A, B = weights[name]
                if A.shape != a.lora_A.shape or B.shape != a.lora_B.shape:
                    raise ValueError(
                        f"warm-start LoRA for {name} has rank/shape A{tuple(A.shape)} B{tuple(B.shape)}, this run "
                        f"needs A{tuple(a.lora_A.shape)} B{tuple(a.lora_B.shape)}: use the same rank and base model")
                a.lora_A.copy_(A)
                a.lora_B.copy_(B / a.scale)
        return untouched


def _hook(adapter: LoraAdapter):
    def apply(module, args, output):
        return adapter.add_to(output, args[0])
    return apply
