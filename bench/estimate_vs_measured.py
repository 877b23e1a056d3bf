"""Pre-flight estimate (trainer_core/estimate.py) against measured full-size LTX-2.3 training steps.

The full-size DiT is built on the meta device (no memory, no GPU), so the predictions run anywhere. Measured
numbers default to the H200 runs in bench/RESULTS.md; pass your own as
``BUCKET:CKPT:RANK:TARGETS:BLOCKS:MODEL_BYTES:PEAK_BYTES:SEC_PER_STEP`` (CKPT on/off, TARGETS comma-separated
presets, BLOCKS the number of blocks the run kept, MODEL_BYTES allocated before the trainer, PEAK_BYTES from
``torch.cuda.max_memory_allocated``), e.g. from ``bench/train_step.py`` on another GPU:

    .venv/bin/python bench/estimate_vs_measured.py
    .venv/bin/python bench/estimate_vs_measured.py 960x544x49:on:32:video_attn:48:37977805824:42498228736:0.901
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer_core.training import estimate as est  # noqa: E402
from trainer_core.training import estimate_model as est_model  # noqa: E402
from trainer_core.training.diffusers_denoiser import DiffusersLTX2Denoiser, ltx2_config  # noqa: E402

# H200, torch 2.11, pack trainer, one sample, 1024 context tokens, video-only (bench/RESULTS.md).
H200_RUNS = """
960x544x49:on:32:video_attn:48:37977805824:42498228736:0.901
512x512x49:on:32:video_attn:48:38047011840:40924408320:0.581
960x544x49:off:32:video_attn:48:38047011840:98616265728:0.641
768x416x49:on:32:video_attn:48:38047011840:41277224448:0.624
960x544x97:on:32:video_attn:48:38047011840:45213888000:1.704
960x544x49:on:128:video_attn:48:38047011840:46333639168:0.915
960x544x49:on:32:video_attn,video_ff:48:38047011840:43405741568:0.969
512x512x49:off:32:video_attn:48:37977805824:70059748864:0.391
960x544x49:on:32:video_attn:12:38045963264:40534458880:0.241
960x544x49:off:32:video_attn:12:38047011840:53648011264:0.172
960x544x97:off:32:video_attn:12:38047011840:66242189824:0.313
960x544x49:off:32:video_attn,video_ff:12:38047011840:55636000768:0.182
1280x704x121:on:32:video_attn:48:38047011840:51796261376:4.101
""".split()


def full_shape() -> est_model.ModelShape:
    from diffusers import LTX2VideoTransformer3DModel

    with torch.device("meta"):
        model = LTX2VideoTransformer3DModel(**ltx2_config("ltx-2.3", "full"))
    return est_model.ModelShape.of(DiffusersLTX2Denoiser(nn.Module.to(model, dtype=torch.bfloat16)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", default=H200_RUNS)
    ap.add_argument("--peak-tflops", type=float, default=est_model.DATASHEET_BF16_FLOPS["H200"] / 1e12,
                    help="datasheet dense bf16 TFLOP/s of the GPU the runs were measured on")
    args = ap.parse_args()
    full = full_shape()
    rate = est_model.ACHIEVED_FRACTION * args.peak_tflops * 1e12
    print("| bucket | tokens | ckpt | rank | targets | blocks | measured GiB (peak-model) | predicted GiB | error "
          "| measured s/step | predicted s/step | error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        bucket, ckpt, rank, targets, blocks, model_bytes, peak, sec = run.split(":")
        blocks = int(blocks)
        shape = dataclasses.replace(full, linears=tuple(lin for lin in full.linears if lin.block < blocks),
                                    n_blocks=blocks)
        w, h, f = (int(v) for v in bucket.split("x"))
        work = est_model.Workload((128, (f - 1) // 8 + 1, h // 32, w // 32), context_tokens=1024, context_width=6144)
        plan = est_model.Plan(rank=int(rank), targets=tuple(targets.split(",")), checkpointing=ckpt == "on",
                        optimizer="adamw", autocast=True, train_audio=False)
        vram = est_model.vram_breakdown(shape, work, plan)
        # The runs keep all 48 blocks' weights resident; compare what training added on top of them.
        measured = int(peak) - int(model_bytes)
        predicted = vram.peak - vram.weights
        measured_total, predicted_total = int(peak), int(model_bytes) + predicted
        seconds = est_model.flops_per_step(shape, work, plan) / rate + est_model.BLOCK_OVERHEAD_S["cuda"] * blocks
        print(f"| {bucket} | {work.video_tokens} | {ckpt} | {rank} | {targets} | {blocks} "
              f"| {measured_total / est.GiB:.2f} ({measured / est.GiB:.2f}) "
              f"| {predicted_total / est.GiB:.2f} ({predicted / est.GiB:.2f}) "
              f"| {100 * (predicted_total - measured_total) / measured_total:+.1f}% "
              f"| {float(sec):.3f} | {seconds:.3f} | {100 * (seconds - float(sec)) / float(sec):+.1f}% |")


if __name__ == "__main__":
    main()
