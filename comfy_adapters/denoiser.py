"""``trainer_core.training.denoiser.Denoiser`` over the LTX-2 / LTX-2.3 model ComfyUI loaded.

The DiT is ComfyUI's own ``LTXAVModel``: its patchify, timestep embeddings, RoPE and output layers run as in
sampling; only the transformer blocks are swapped, through ComfyUI's ``patches_replace["dit"]`` hook, for the
autograd-safe ``training_block_forward`` (optionally under per-block gradient checkpointing). Nothing is
changed in the user's model: the hooks live in this call's ``transformer_options``.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

from ..trainer_core.training.denoiser import DenoiserInput, DenoiserOutput
from .block_compile import BlockRunner, checkpointed_block, choose_runner, run_block
from .ic_guide import with_reference_guide
from .cross_timestep import cross_timesteps, installed_convention
from .training_block import training_block_forward


class TrainingForwardMismatch(RuntimeError):
    pass


def ltx_version(diffusion_model) -> str:
    """ComfyUI has no version field: LTX-2.3 is the flag set its metadata switches on."""
    return "ltx-2.3" if getattr(diffusion_model, "cross_attention_adaln", False) else "ltx-2.0"


class ComfyLTXDenoiser:
    def __init__(self, diffusion_model: nn.Module, compute_dtype: torch.dtype | None = None):
        """``compute_dtype``: what ComfyUI computes in (``BaseModel.get_dtype_inference()``); it differs from the
        stored weights' dtype when those are fp8, which ComfyUI casts up per layer."""
        self.dm = diffusion_model
        self.base_model_version = ltx_version(diffusion_model)
        self.checkpointing = True
        self.dtype = compute_dtype or next(diffusion_model.parameters()).dtype
        self.runner = BlockRunner("eager")
        self._sharded: list[nn.Module] = []

    def compile_blocks(self, device: torch.device, mode: str = "compiled") -> str:
        """Compile the training block where this model and device allow it (see ``block_compile``); returns the
        mode in effect. Sharded (FSDP) runs keep the eager block."""
        self.runner = BlockRunner("eager") if self._sharded else choose_runner(self.dm, device, mode)
        return self.runner.mode

    def context_widths(self) -> tuple[int, int]:
        dm = self.dm
        if dm.caption_proj_before_connector:
            return dm.cross_attention_dim, dm.audio_cross_attention_dim
        return dm.caption_channels, dm.caption_channels

    def lora_targets(self) -> dict[str, nn.Linear]:
        return {name: m for name, m in self.dm.named_modules()
                if isinstance(m, nn.Linear) and name.startswith("transformer_blocks.")}

    def base_parameters(self) -> list[nn.Parameter]:
        return list(self.dm.parameters())

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        self.checkpointing = enabled

    def shard_blocks(self, shard) -> None:
        """FSDP2 for multi-GPU runs: each block runs inside a small module that ``shard`` (``fully_shard``) wraps,
        so FSDP's hooks gather the block's weights for its forward, its checkpoint recompute and its backward. The
        checkpoint sits inside the wrapper, the order FSDP2 composes with activation checkpointing."""
        self._sharded = [shard(_ShardedBlock(block, self)) for block in self.dm.transformer_blocks]

    def __call__(self, inputs: DenoiserInput) -> DenoiserOutput:
        video, timesteps, guide = inputs.video, inputs.video_timesteps, {}
        if inputs.reference is not None:
            video, timesteps, guide = with_reference_guide(inputs)
        x = [video.to(self.dtype)]
        audio_t = inputs.sigma
        cross = {}
        if inputs.audio is not None:
            x.append(inputs.audio.to(self.dtype))
            audio_t = inputs.audio_timesteps
            audio_sigma = inputs.audio_sigma if inputs.audio_sigma is not None else inputs.audio_timesteps.amax(1)
            cross = cross_timesteps(self.dm, inputs.video_timesteps, inputs.audio_timesteps, inputs.sigma,
                                    audio_sigma, inputs.video.shape[3] * inputs.video.shape[4], self.dtype)
        replace = {("double_block", i): self._block(i, cross) for i in range(len(self.dm.transformer_blocks))}
        out = self.dm(x, (timesteps, audio_t), inputs.context.to(self.dtype), frame_rate=inputs.fps,
                      transformer_options={"patches_replace": {"dit": replace}}, **guide)
        if isinstance(out, (list, tuple)):
            return DenoiserOutput(video=out[0][:, :, :inputs.video.shape[2]], audio=out[1])
        return DenoiserOutput(video=out[:, :, :inputs.video.shape[2]])

    def _block(self, index: int, cross: dict | None = None):
        # Bound by index: ComfyUI's ``original_block`` closes over its loop variable, so a checkpoint recompute
        # calling it later would run the last block instead.
        block = self.dm.transformer_blocks[index]

        def run(args, extra):
            kwargs = {**args, **(cross or {})}
            vx, ax = kwargs.pop("img")
            # Only the switches the block reads: the full options carry every block's hook, which a compiled
            # block would otherwise have to guard on.
            opts = kwargs.get("transformer_options") or {}
            kwargs["transformer_options"] = {k: opts[k] for k in _BLOCK_SWITCHES if k in opts}
            if self._sharded:
                return {"img": self._sharded[index](vx, ax, kwargs)}
            checkpointing = self.checkpointing and torch.is_grad_enabled()
            return {"img": self.runner(block, vx, ax, kwargs, checkpointing)}

        return run


_BLOCK_SWITCHES = ("run_vx", "run_ax", "a2v_cross_attn", "v2a_cross_attn")


class _ShardedBlock(nn.Module):
    def __init__(self, block: nn.Module, denoiser: ComfyLTXDenoiser):
        super().__init__()
        self.block = block
        self._denoiser = [denoiser]  # not a submodule: only the block's weights are sharded

    def forward(self, vx, ax, kwargs):
        if self._denoiser[0].checkpointing and torch.is_grad_enabled():
            return checkpointed_block(self.block, vx, ax, kwargs)
        return run_block(self.block, vx, ax, kwargs)


@contextlib.contextmanager
def trainable_view(diffusion_model: nn.Module):
    """Lets autograd use the model's weights for the duration of training.

    ComfyUI loads weights inside ``torch.inference_mode()``, and autograd refuses to save inference tensors for
    backward. Each such parameter is swapped for a zero-copy alias of the same memory (made through DLPack, which
    yields a normal tensor), and the original parameter objects are put back afterwards: the values never change
    and no memory is copied.
    """
    swapped = []
    try:
        # Outside inference mode, or the aliases would be inference tensors again (nodes run inside it).
        with torch.inference_mode(False):
            _swap_in_aliases(diffusion_model, swapped)
        yield
    finally:
        for module, name, param in swapped:
            module._parameters[name] = param


def _swap_in_aliases(diffusion_model: nn.Module, swapped: list) -> None:
    for module in diffusion_model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or not param.is_inference():
                continue
            try:
                alias = torch.from_dlpack(param.detach())
            except (RuntimeError, TypeError, BufferError):
                # Quantized or exotic tensors have no DLPack form; ComfyUI's cast path copies those per use.
                continue
            module._parameters[name] = nn.Parameter(alias, requires_grad=False)
            swapped.append((module, name, param))


@dataclasses.dataclass
class ParityReport:
    max_rel_error: float
    tolerance: float
    comfyui_version: str
    cross_timestep_convention: str = ""
    """What the installed ComfyUI feeds the audio<->video AdaLN: "ltx-core" (what the weights expect, and what
    training always uses) or "comfyui-0.20" (sampling in this ComfyUI differs from Lightricks' pipelines)."""

    @property
    def ok(self) -> bool:
        return self.max_rel_error <= self.tolerance


class _Captured(Exception):
    pass


def check_block_parity(diffusion_model: nn.Module, device: torch.device, dtype: torch.dtype | None = None,
                       block_index: int = 0, seed: int = 0) -> ParityReport:
    """Runs one block of the loaded model both ways on a small random input and compares.

    The block arguments come from the real model (its own timestep embeddings, RoPE and context projection) by
    running its forward up to block ``block_index`` and stopping there; the audio<->video AdaLN arguments are then
    replaced by ltx-core's (``cross_timestep``), as in training, so the reference is the block the released
    weights run in Lightricks' pipelines. Video and audio get different sigmas so a convention mix-up shows.
    ComfyUI's block mutates its inputs, so it gets clones. ``device`` and ``dtype`` are what ComfyUI computes
    in: with streamed or fp8 weights, parameters may live elsewhere and in another dtype.
    """
    dm = diffusion_model
    dtype = dtype or next(dm.parameters()).dtype
    gen = torch.Generator(device="cpu").manual_seed(seed)
    widths = ComfyLTXDenoiser(dm).context_widths()
    video = torch.randn(1, dm.in_channels, 2, 2, 2, generator=gen).to(device, dtype)
    audio = torch.randn(1, dm.num_audio_channels, 3, dm.audio_frequency_bins, generator=gen).to(device, dtype)
    context = torch.randn(1, 8, sum(widths), generator=gen).to(device, dtype)
    v_sigma, a_sigma = torch.tensor([0.6], device=device), torch.tensor([0.3], device=device)
    v_t, a_t = v_sigma[:, None].expand(1, 8), a_sigma[:, None].expand(1, 3)
    captured = {}

    def capture(args, extra):
        captured.update(args)
        raise _Captured

    with torch.no_grad():
        try:
            dm([video, audio], (v_t, a_t), context, frame_rate=24.0,
               transformer_options={"patches_replace": {"dit": {("double_block", block_index): capture}}})
        except _Captured:
            pass
        reference = cross_timesteps(dm, v_t, a_t, v_sigma, a_sigma, 2 * 2, dtype)
        convention = installed_convention(captured, reference)
        kwargs = {**captured, **reference}
        vx, ax = kwargs.pop("img")
        block = dm.transformer_blocks[block_index]
        stock = block((vx.clone(), ax.clone()), **kwargs)
        ours = training_block_forward(block, (vx.clone(), ax.clone()), **kwargs)
    errors = [((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item() for a, b in zip(ours, stock)]
    tolerance = 1e-5 if dtype in (torch.float32, torch.float64) else 2e-2
    return ParityReport(max(errors), tolerance, _comfyui_version(), convention)


def _comfyui_version() -> str:
    try:
        import comfyui_version

        return comfyui_version.__version__
    except ImportError:
        return "unknown"


def ensure_training_forward_matches(diffusion_model: nn.Module, device: torch.device,
                                    dtype: torch.dtype | None = None) -> ParityReport:
    report = check_block_parity(diffusion_model, device, dtype)
    if not report.ok:
        raise TrainingForwardMismatch(
            f"ComfyUI {report.comfyui_version} computes the LTX transformer block differently from this pack's "
            f"training forward (relative difference {report.max_rel_error:.2e}, allowed {report.tolerance:.0e}). "
            "Training would optimise a different function than the one you sample with, so it was not started. "
            "Update the LTX-2.3 Trainer pack, or use the ComfyUI version it supports (v0.20.x).")
    return report
