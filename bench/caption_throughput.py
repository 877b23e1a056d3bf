"""Caption Dataset throughput on the full-size Gemma 3 12B (random weights): clips per minute and peak memory.

Builds the LTX-2.3 text encoder exactly as ComfyUI's ``LTXAVTextEncoderLoader`` does, minus the file read: a random
bf16 state dict for ComfyUI's ``Gemma3_12B`` (48 layers, SigLIP vision tower, projector; 12.2 B parameters) plus
the 2.3 dual text projection, handed to ``comfy.sd.load_text_encoder_state_dicts(clip_type=LTXV)``. Each clip is
then captioned through the node's own adapter (``comfy_adapters.captioner.ComfyCaptioner``: tokenize with the
frames as images, ``clip.generate``, ``clip.decode``) with the node's prompt, from ``--frames`` frames of
``--width`` x ``--height``. Frame decoding is not included (synthetic frames; the real node decodes them with PyAV).

Random weights rarely emit ``<end_of_turn>``, so every caption runs to ``--max-length`` tokens: a worst case for
the decode phase. The tokenizer is a small SentencePiece model trained here (no network, no Gemma tokenizer);
generated ids beyond its pieces are folded into its range for decoding, which costs nothing measurable.

    python3 bench/caption_throughput.py                # GPU, full size, 49 frames, 256 tokens, 3 timed clips
    python3 bench/caption_throughput.py --tiny         # CPU check of the script with the tests' tiny Gemma
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "comfy"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui-root", default=str(REPO / ".carry" / "ComfyUI"))
    parser.add_argument("--tiny", action="store_true", help="tiny random Gemma on the CPU (checks the script)")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--clips", type=int, default=3, help="timed clips")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args()


def random_like(shape, name: str, device, generator) -> torch.Tensor:
    """bf16 N(0, 1/fan_in) matrices, unit norm weights: never all-zero weights, which time differently."""
    if len(shape) >= 2:
        t = torch.empty(shape, device=device, dtype=torch.bfloat16).normal_(0, shape[-1] ** -0.5, generator=generator)
    elif "norm" in name and name.endswith("weight"):
        t = torch.ones(shape, device=device, dtype=torch.bfloat16)
    else:
        t = torch.empty(shape, device=device, dtype=torch.bfloat16).normal_(0, 0.02, generator=generator)
    return t.cpu()


def state_dicts(tiny: bool, device) -> list[dict[str, torch.Tensor]]:
    """The two files the LTX-2.3 text encoder loader reads: Gemma (with ``spiece_model``) and the projection."""
    import comfy.ops
    import tiny_gemma
    from comfy.text_encoders import llama

    with torch.device("meta"):
        gemma = llama.Gemma3_12B({}, torch.bfloat16, "meta", comfy.ops.disable_weight_init)
    generator = torch.Generator(device=device).manual_seed(0)
    sd = {name: random_like(t.shape, name, device, generator) for name, t in gemma.state_dict().items()}
    sd["spiece_model"] = torch.frombuffer(bytearray(tiny_gemma.train_tokenizer()), dtype=torch.uint8)
    if tiny:
        return [sd, {}]  # two "files" select the LTXV pair path; the tiny run leaves the projection unloaded
    projection = {}
    for kind, width in (("video", 4096), ("audio", 2048)):
        projection[f"text_embedding_projection.{kind}_aggregate_embed.weight"] = \
            random_like((width, 3840 * 49), "w", device, generator)
        projection[f"text_embedding_projection.{kind}_aggregate_embed.bias"] = \
            random_like((width,), "b", device, generator)
    return [sd, projection]


def main() -> None:
    args = parse_args()
    try:
        import sentencepiece  # noqa: F401  (ComfyUI's Gemma tokenizer needs it)
    except ImportError:
        sys.exit("sentencepiece is missing: pip install sentencepiece (or its wheel from .whl/), then run again")
    sys.path.insert(0, args.comfyui_root)
    from comfy.cli_args import args as comfy_args

    cuda = torch.cuda.is_available() and not args.tiny
    comfy_args.cpu = not cuda
    if not cuda:
        torch.set_num_threads(1)  # the CPU run only checks the script; more threads thrash on shared cores
    import comfy.sd
    from comfy.text_encoders import llama

    from comfy_adapters.captioner import ComfyCaptioner
    from trainer_core.data.caption_prompt import build_prompt

    if args.tiny:
        import tiny_gemma

        llama.Gemma3_12B_Config = tiny_gemma.tiny_config_class()
    device = torch.device("cuda" if cuda else "cpu")
    started = time.perf_counter()
    sds = state_dicts(args.tiny, device)
    built_s = time.perf_counter() - started
    started = time.perf_counter()
    clip = comfy.sd.load_text_encoder_state_dicts(sds, clip_type=comfy.sd.CLIPType.LTXV)
    del sds
    load_s = time.perf_counter() - started
    params = sum(p.numel() for p in clip.cond_stage_model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in clip.cond_stage_model.parameters())

    generated = []
    generate, decode = clip.generate, clip.decode
    pieces = clip.tokenizer.gemma3_12b.tokenizer.tokenizer.get_piece_size()
    clip.generate = lambda *a, **k: generated.append(generate(*a, **k)) or generated[-1]
    clip.decode = lambda ids, **k: decode([i % pieces for i in ids], **k)
    captioner = ComfyCaptioner(clip)
    prompt = build_prompt(still=False, frames=args.frames, duration=args.frames / 24, has_audio=True,
                          subject="a woman with short brown hair", can_hear=captioner.can_hear)
    frames = torch.rand(args.frames, args.height, args.width, 3)

    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        for index in range(args.warmup + args.clips):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            captioner(prompt, frames, args.max_length, seed=index)
            if cuda:
                torch.cuda.synchronize()
            if index >= args.warmup:
                times.append(time.perf_counter() - start)

    per_clip = statistics.median(times)
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
        "model": "tiny" if args.tiny else "gemma-3-12b (ComfyUI Gemma3_12B, random bf16) + 2.3 dual projection",
        "parameters_b": round(params / 1e9, 3), "weights_gib": round(weight_bytes / 2**30, 2),
        "frames": args.frames, "size": f"{args.width}x{args.height}", "max_length": args.max_length,
        "tokens_generated": [len(g) for g in generated[args.warmup:]], "build_s": round(built_s, 1),
        "load_s": round(load_s, 1), "s_per_clip": [round(t, 2) for t in times],
        "clips_per_min": round(60 / per_clip, 2),
        "peak_gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
        "peak_host_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(f"{result['device']}: {result['clips_per_min']} clips/min at {args.frames} frames {result['size']}, "
          f"{args.max_length} tokens (median {per_clip:.2f} s/clip of {len(times)}); weights "
          f"{result['weights_gib']} GiB, peak GPU {result['peak_gpu_allocated_gib']} GiB allocated / "
          f"{result['peak_gpu_reserved_gib']} GiB reserved, host RSS {result['peak_host_rss_gib']} GiB")
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
