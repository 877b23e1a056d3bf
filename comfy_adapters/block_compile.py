"""Regional ``torch.compile`` of the training block.

A training step of LTX-2.3 launches ~22k small kernels (RMSNorm, AdaLN modulation, RoPE, gates, residual adds,
LoRA adds); on a fast GPU the host cannot launch them as fast as the GPU runs them. Compiling the one block
function that all 48 blocks share fuses those chains into a few Triton kernels. Dynamo treats each block's
weights (and its LoRA adapters, reached through the forward hooks) as inputs, so one compiled graph serves every
block; shapes are fixed per bucket (``dynamic=False``), so each new bucket compiles once more. Inductor keeps its
compiled kernels in its on-disk cache, so a later run with the same buckets starts much faster.

Compiling needs CUDA, Triton and weights that stay where they are: ComfyUI's per-layer casting (streamed, fp8 or
patched weights, and dynamic VRAM, which routes every layer through it) runs Python that changes between calls, so
those models train eagerly. Where compiling is not
possible or turned off (``LTX23_TRAINER_COMPILE=0``), the log says why and the eager block runs.
"""

from __future__ import annotations

import logging
import os

import torch
from torch.utils.checkpoint import checkpoint

from .training_block import training_block_forward

log = logging.getLogger(__name__)

MIN_TORCH = (2, 6)
ENV_SWITCH = "LTX23_TRAINER_COMPILE"


def run_block(block, vx, ax, kwargs):
    return training_block_forward(block, (vx, ax), **kwargs)


def checkpointed_block(block, vx, ax, kwargs):
    return checkpoint(run_block, block, vx, ax, kwargs, use_reentrant=False)


def compile_unavailable(diffusion_model, device: torch.device) -> str | None:
    """Why the blocks of ``diffusion_model`` cannot be compiled on ``device``, or None when they can."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
        return f"{ENV_SWITCH} is off"
    if torch.device(device).type != "cuda":
        return f"the device is {torch.device(device).type}, and compiling pays only on CUDA"
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH:
        return f"torch {torch.__version__} is older than {'.'.join(map(str, MIN_TORCH))}"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed"
    for module in diffusion_model.transformer_blocks.modules():
        if getattr(module, "comfy_cast_weights", False) or getattr(module, "weight_function", None) \
                or getattr(module, "bias_function", None):
            return "ComfyUI casts or patches block weights per layer (streamed, fp8 or patched weights)"
    return None


class BlockRunner:
    """Runs one transformer block for training, with or without per-block checkpointing, compiled where it can.

    ``mode``: ``"eager"``; ``"compiled"`` (the block compiled, checkpointed from outside, so the recompute in the
    backward runs the compiled forward again); ``"compiled-checkpoint"`` (checkpoint traced into the compiled
    graph, which lets the compiler choose what to recompute and makes one Python call per block instead of two;
    checked on CPU, not yet timed on a GPU, so the node uses ``"compiled"``)."""

    MODES = ("eager", "compiled", "compiled-checkpoint")

    def __init__(self, mode: str = "eager", backend: str = "inductor"):
        if mode not in self.MODES:
            raise ValueError(f"block mode {mode!r}: expected one of {self.MODES}")
        self.mode = mode
        if mode == "eager":
            self._plain, self._ckpt = run_block, checkpointed_block
        else:
            self._plain = _compiled(run_block, backend)
            self._ckpt = _compiled(checkpointed_block, backend) if mode == "compiled-checkpoint" else None

    def __call__(self, block, vx, ax, kwargs, checkpointing: bool):
        try:
            return self._run(block, vx, ax, kwargs, checkpointing)
        except Exception as exc:
            if self.mode == "eager" or not _is_compiler_error(exc):
                raise
            # A broken compiler toolchain (no C compiler for Triton, say) must not end the run: the block is
            # out of place, so running it again eagerly is the same computation.
            cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc
            log.warning("LTX-2.3 trainer: compiling the training block failed (%s: %s); it runs eagerly from now "
                        "on.", type(cause).__name__, (str(cause).strip().splitlines() or [""])[0])
            self.mode, self._plain, self._ckpt = "eager", run_block, checkpointed_block
            return self._run(block, vx, ax, kwargs, checkpointing)

    def _run(self, block, vx, ax, kwargs, checkpointing: bool):
        if checkpointing and self._ckpt is not None:
            return self._ckpt(block, vx, ax, kwargs)
        if checkpointing:
            return checkpoint(self._plain, block, vx, ax, kwargs, use_reentrant=False)
        return self._plain(block, vx, ax, kwargs)


_COMPILED: dict = {}


def _compiled(fn, backend):
    """One compiled wrapper per function and backend for the whole process, so a second training run (another
    node execution) reuses the graphs of the first instead of stacking up recompiles."""
    key = (fn, backend)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, dynamic=False, backend=backend)
    return _COMPILED[key]


def _is_compiler_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[:2] in (["torch", "_dynamo"], ["torch", "_inductor"]) \
        or type(exc).__module__.startswith("triton")


def choose_runner(diffusion_model, device: torch.device, mode: str = "compiled") -> BlockRunner:
    """The runner the node uses: ``mode`` where compiling is possible, else eager, saying why in the log."""
    if mode == "eager":
        return BlockRunner("eager")
    reason = compile_unavailable(diffusion_model, device)
    if reason is not None:
        log.info("LTX-2.3 trainer: training blocks run eagerly (not compiled): %s.", reason)
        return BlockRunner("eager")
    log.info("LTX-2.3 trainer: training blocks are compiled with torch.compile (%s); the first step of each "
             "bucket includes the compile.", mode)
    return BlockRunner(mode)
