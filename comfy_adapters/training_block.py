"""An autograd-safe forward for ComfyUI's LTX-2 ``BasicAVTransformerBlock``.

ComfyUI's block updates its residual streams in place (``addcmul_``/``add_``) and mutates its own inputs, so
autograd either raises or, under per-block checkpointing, silently computes wrong gradients (the recompute sees
inputs already changed by later blocks; ``rms_norm`` saved the residual it then mutates). This module computes
the same function out of place, reusing the block's own submodules and weights, and calls PyTorch's SDPA
directly so that a gradient-checkpoint recompute takes exactly the attention path of the forward (ComfyUI's
attention dispatch may chunk by free memory, which differs between forward and recompute).

``check_block_parity`` compares it with the installed ComfyUI block, so a ComfyUI update that changes the block
is caught before training instead of training a different function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from comfy.ldm.common_dit import rms_norm
from comfy.ldm.lightricks.model import apply_rotary_emb


def _attention(attn, x, context=None, mask=None, pe=None, k_pe=None):
    """ComfyUI's ``CrossAttention.forward`` with the attention itself pinned to SDPA."""
    q = attn.to_q(x)
    context = x if context is None else context
    k = attn.to_k(context)
    v = attn.to_v(context)
    q = attn.q_norm(q)
    k = attn.k_norm(k)
    if pe is not None:
        q = apply_rotary_emb(q, pe)
        k = apply_rotary_emb(k, pe if k_pe is None else k_pe)
    b, t, _ = q.shape
    heads = attn.heads
    q, k, v = (z.view(b, -1, heads, attn.dim_head).transpose(1, 2) for z in (q, k, v))
    if mask is not None:
        # ComfyUI's masks are additive [B, L] / [B, T, L]; SDPA wants them broadcastable to [B, H, T, L].
        mask = mask.to(q.dtype)
        if mask.ndim == 2:
            mask = mask[:, None, None, :]
        elif mask.ndim == 3:
            mask = mask[:, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = out.transpose(1, 2).reshape(b, t, heads * attn.dim_head)
    if attn.to_gate_logits is not None:
        gates = 2.0 * torch.sigmoid(attn.to_gate_logits(x))
        out = (out.view(b, t, heads, attn.dim_head) * gates.unsqueeze(-1)).view(b, t, heads * attn.dim_head)
    return attn.to_out(out)


def _text_cross_attention(block, x, context, attn, table, prompt_table, timestep, prompt_timestep, mask):
    if block.cross_attention_adaln:
        shift_q, scale_q, gate = block.get_ada_values(table, x.shape[0], timestep, slice(6, 9))
        shift_kv, scale_kv = (
            prompt_table[None, None].to(device=x.device, dtype=x.dtype)
            + prompt_timestep.reshape(x.shape[0], prompt_timestep.shape[1], 2, -1)
        ).unbind(dim=2)
        query = rms_norm(x) * (1 + scale_q) + shift_q
        return _attention(attn, query, context=context * (1 + scale_kv) + shift_kv, mask=mask) * gate
    return _attention(attn, rms_norm(x), context=context, mask=mask)


def training_block_forward(block, x, v_context=None, a_context=None, attention_mask=None, v_timestep=None,
                           a_timestep=None, v_pe=None, a_pe=None, v_cross_pe=None, a_cross_pe=None,
                           v_cross_scale_shift_timestep=None, a_cross_scale_shift_timestep=None,
                           v_cross_gate_timestep=None, a_cross_gate_timestep=None, transformer_options=None,
                           self_attention_mask=None, v_prompt_timestep=None, a_prompt_timestep=None):
    """``BasicAVTransformerBlock.forward`` (ComfyUI v0.20), out of place: same arguments, same result."""
    opts = transformer_options or {}
    vx, ax = x
    run_vx = opts.get("run_vx", True)
    run_ax = opts.get("run_ax", True) and ax.numel() > 0
    run_a2v = run_vx and opts.get("a2v_cross_attn", True) and ax.numel() > 0
    run_v2a = run_ax and opts.get("v2a_cross_attn", True)
    ada = block.get_ada_values

    if run_vx:
        shift, scale = ada(block.scale_shift_table, vx.shape[0], v_timestep, slice(0, 2))
        out = _attention(block.attn1, rms_norm(vx) * (1 + scale) + shift, pe=v_pe, mask=self_attention_mask)
        vx = vx.addcmul(out, ada(block.scale_shift_table, vx.shape[0], v_timestep, slice(2, 3))[0])
        vx = vx + _text_cross_attention(block, vx, v_context, block.attn2, block.scale_shift_table,
                                        getattr(block, "prompt_scale_shift_table", None), v_timestep,
                                        v_prompt_timestep, attention_mask)
    if run_ax:
        shift, scale = ada(block.audio_scale_shift_table, ax.shape[0], a_timestep, slice(0, 2))
        out = _attention(block.audio_attn1, rms_norm(ax) * (1 + scale) + shift, pe=a_pe)
        ax = ax.addcmul(out, ada(block.audio_scale_shift_table, ax.shape[0], a_timestep, slice(2, 3))[0])
        ax = ax + _text_cross_attention(block, ax, a_context, block.audio_attn2, block.audio_scale_shift_table,
                                        getattr(block, "audio_prompt_scale_shift_table", None), a_timestep,
                                        a_prompt_timestep, attention_mask)
    if run_a2v or run_v2a:
        vx_norm, ax_norm = rms_norm(vx), rms_norm(ax)
        a_table, v_table = block.scale_shift_table_a2v_ca_audio, block.scale_shift_table_a2v_ca_video
        vx_in, ax_in = vx, ax
        if run_a2v:
            a_scale, a_shift = ada(a_table[:4, :], ax_in.shape[0], a_cross_scale_shift_timestep)[:2]
            v_scale, v_shift = ada(v_table[:4, :], vx_in.shape[0], v_cross_scale_shift_timestep)[:2]
            out = _attention(block.audio_to_video_attn, vx_norm * (1 + v_scale) + v_shift,
                             context=ax_norm * (1 + a_scale) + a_shift, pe=v_cross_pe, k_pe=a_cross_pe)
            vx = vx_in.addcmul(out, ada(v_table[4:, :], vx_in.shape[0], v_cross_gate_timestep)[0])
        if run_v2a:
            a_scale, a_shift = ada(a_table[:4, :], ax_in.shape[0], a_cross_scale_shift_timestep)[2:4]
            v_scale, v_shift = ada(v_table[:4, :], vx_in.shape[0], v_cross_scale_shift_timestep)[2:4]
            out = _attention(block.video_to_audio_attn, ax_norm * (1 + a_scale) + a_shift,
                             context=vx_norm * (1 + v_scale) + v_shift, pe=a_cross_pe, k_pe=v_cross_pe)
            ax = ax_in.addcmul(out, ada(a_table[4:, :], ax_in.shape[0], a_cross_gate_timestep)[0])
    if run_vx:
        shift, scale = ada(block.scale_shift_table, vx.shape[0], v_timestep, slice(3, 5))
        out = block.ff(rms_norm(vx) * (1 + scale) + shift)
        vx = vx.addcmul(out, ada(block.scale_shift_table, vx.shape[0], v_timestep, slice(5, 6))[0])
    if run_ax:
        shift, scale = ada(block.audio_scale_shift_table, ax.shape[0], a_timestep, slice(3, 5))
        out = block.audio_ff(rms_norm(ax) * (1 + scale) + shift)
        ax = ax.addcmul(out, ada(block.audio_scale_shift_table, ax.shape[0], a_timestep, slice(5, 6))[0])
    return vx, ax
