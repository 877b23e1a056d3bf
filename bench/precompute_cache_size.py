"""Latent Precompute: cache bytes per sample at 960x544x49 (LTX-2.3 shapes) and CPU encode throughput.

Sizes are measured on real cache files written by ``trainer_core.cache.latent_cache`` (safetensors headers included):
video latent ``[128, 7, 17, 30]``, processed context ``[1024, 4096 + 2048]`` (the connectors pad every caption
to 1024 tokens, so the whole tensor is stored), audio latent ``[8, 52, 16]`` (49 frames at 24 fps = 2.04 s at
25 latents/s). Throughput runs ``precompute()`` end to end (frame loading excluded: frames are synthesised) with
the tiny diffusers VAE and, for scale, the full-size LTX-2 VAE architecture with random weights at a small size.

    .venv/bin/python bench/precompute_cache_size.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer_core.cache import latent_cache as lc  # noqa: E402
from trainer_core.cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae  # noqa: E402
from trainer_core.cache.precompute import precompute  # noqa: E402
from trainer_core.data.samples import Sample  # noqa: E402

SHAPES = {"video_latents": (128, 7, 17, 30), "context": (1024, 4096 + 2048), "audio_latents": (8, 52, 16)}


def file_bytes(root: str, kind: str, name: str, shape, dtype) -> int:
    return lc.write_tensors(os.path.join(root, lc.relpath(kind, "k" * 32)), {name: torch.zeros(shape, dtype=dtype)},
                            {"format": lc.FORMAT, "key": "k" * 32, "kind": kind, "text": "x" * 200})


def sizes() -> None:
    print("## cache bytes per sample, 960x544x49, LTX-2.3 shapes")
    with tempfile.TemporaryDirectory() as root:
        for label, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            video = file_bytes(root, "media", "video_latents", SHAPES["video_latents"], dtype)
            context = file_bytes(root, "text", "context", SHAPES["context"], dtype)
            audio = file_bytes(root, "audio", "audio_latents", SHAPES["audio_latents"], dtype)
            print(f"{label}: video latent {video:,} B; context {context:,} B (stored once per distinct caption); "
                  f"audio {audio:,} B")
            print(f"{label}: per sample, unique caption: {video + context:,} B video-only, "
                  f"{video + context + audio:,} B with audio; 10 windows sharing one caption: "
                  f"{video + context // 10:,} B per sample video-only")


def throughput(vae, label: str, width: int, height: int, frames: int, clips: int) -> None:
    samples = [Sample(sample_id=f"s{i}", media_path=f"/synthetic/{i}", media_identity=str(i), kind="video",
                      caption=f"tok clip {i}", width=width, height=height, frames=frames, fps=24.0, start_time=0.0)
               for i in range(clips)]
    frame = torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(0))
    encoder = DiffusersVideoEncoder(vae, tiling="never")
    with tempfile.TemporaryDirectory() as root:
        encoder.encode(frame[None, :9] if frames >= 9 else frame[None])  # warm-up
        t0 = time.perf_counter()
        report = precompute(samples, root, video_encoder=encoder, text_conditioner=StandInTextConditioner(),
                            frame_loader=lambda s: frame)
        wall = time.perf_counter() - t0
    video_s = report.seconds["video"]
    print(f"{label}, {width}x{height}x{frames}, {clips} clips, {torch.get_num_threads()} CPU threads: "
          f"{report.frames_encoded / video_s:.1f} frames/s, {clips / video_s:.2f} clips/s "
          f"({video_s:.2f} s video encode, {wall:.2f} s whole run)")


def main() -> None:
    torch.manual_seed(0)
    sizes()
    print("## CPU encode throughput (precompute(), frames synthesised, fp32 VAE)")
    tiny = build_tiny_vae()
    throughput(tiny, "tiny diffusers LTX-2 VAE (1.5 M params)", 960, 544, 49, 3)
    from diffusers import AutoencoderKLLTX2Video

    full = AutoencoderKLLTX2Video(spatial_compression_ratio=32, temporal_compression_ratio=8).eval()
    params = sum(p.numel() for p in full.parameters()) / 1e6
    throughput(full, f"full-size LTX-2 VAE architecture, random weights ({params:.0f} M params)", 256, 256, 9, 1)


if __name__ == "__main__":
    with torch.no_grad():
        main()
