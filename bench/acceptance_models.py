"""Random-weight model files in the official layouts and names the bundled workflows use, for
``acceptance_comfyui.py``: the LTX-2.3 checkpoint (DiT + text connectors + video VAE + audio VAE + vocoder + the
Gemma-to-DiT text projection, with the ``config`` metadata ComfyUI reads to detect 2.3) and the Gemma 3 12B text
encoder with a SentencePiece tokenizer trained here (none can be downloaded).

Full size: DiT and video VAE at their real architecture in bf16 (ComfyUI's default VAE for the detected version;
42 GB), Gemma 3 12B in fp8 e4m3fn (12 GB, ComfyUI casts it per layer), the audio VAE and vocoder small (the
workflows train video only; the audio VAE is only loaded). Tiny: ``tests/comfy/tiny_checkpoint`` plus a 48-layer
Gemma of width 16, which ``acceptance_tiny/`` (a custom node linked only in --tiny runs) makes ComfyUI build.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests" / "comfy"))

CHECKPOINT = "ltx-2.3-22b-dev.safetensors"
TEXT_ENCODER = "gemma_3_12B_it_fp4_mixed.safetensors"
GEMMA_LAYERS = 48
TOKENIZER_VOCAB = 512
"""Pieces of the locally trained tokenizer (ids beyond it exist in the embedding, unused)."""

_CORPUS = [
    "sks walks through a sunlit park, medium shot", "sks talks to the camera in a dim kitchen, close-up",
    "a red sports car driving along a coastal road at sunset", "a bowl of fruit on a wooden table, still camera",
    "a red ball bouncing from left to right across a blue backdrop", "the camera slowly pans left across a street",
    "a woman with brown hair walks along a beach while waves roll in", "soft light, shallow depth of field",
    "pc game, console game, video game, cartoon, childish, ugly", "You are a helpful assistant.",
]


def train_tokenizer(vocab: int) -> bytes:
    """A SentencePiece model with Gemma's special ids (pad 0, eos 1, bos 2, unk 3), trained on the prompts."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 50), model_writer=model, vocab_size=vocab, model_type="bpe",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, hard_vocab_limit=False, byte_fallback=True, minloglevel=2,
        num_threads=1)
    return model.getvalue()


def _fill(name: str, shape, dtype, gen: torch.Generator, device) -> torch.Tensor:
    t = torch.empty(shape, dtype=torch.float32 if dtype.itemsize == 1 else dtype, device=device)
    if name.endswith("std-of-means"):
        t.fill_(1.0)
    elif name.endswith("mean-of-means"):
        t.zero_()
    elif len(shape) >= 2:
        t.normal_(0, shape[-1] ** -0.5, generator=gen)
    elif "norm" in name and name.endswith(".weight"):
        t.fill_(1.0)
    else:
        t.normal_(0, 0.02, generator=gen)
    return t.to(dtype).cpu()


def _random_state(module_shapes: dict, dtype, gen, device, keep: dict | None = None) -> dict[str, torch.Tensor]:
    """Random values for every entry of a state dict of shapes; ``keep`` holds real buffers (filters, mel bases)."""
    out = {}
    for name, ref in module_shapes.items():
        kept = (keep or {}).get(name)
        if kept is not None and not name.endswith("-of-means") and bool(torch.isfinite(kept).all()):
            out[name] = kept
            continue
        is_float = ref.dtype.is_floating_point
        out[name] = _fill(name, tuple(ref.shape), dtype if is_float and ref.ndim >= 2 else torch.float32, gen,
                          device) if is_float else torch.zeros(tuple(ref.shape), dtype=ref.dtype)
    return out


def write_checkpoint(path: Path, tiny: bool, device: torch.device) -> None:
    import comfy.ops
    import tiny_checkpoint
    from comfy.ldm.lightricks.av_model import LTXAVModel
    from comfy.ldm.lightricks.vae.audio_vae import AudioVAE
    from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE
    from safetensors.torch import save_file

    if tiny:
        sd, metadata = tiny_checkpoint.build_state_dict("2.3")
        cfg = tiny_checkpoint.TRANSFORMER_CONFIGS["2.3"]
        from acceptance_tiny import WIDTHS

        gemma_width = WIDTHS["hidden_size"]
    else:
        import train_step

        cfg = train_step.COMFY_LTX23_FULL
        config = {"transformer": cfg, "audio_vae": tiny_checkpoint.AUDIO_VAE_CONFIG,
                  "vocoder": tiny_checkpoint.VOCODER_CONFIG}
        metadata = {"config": json.dumps(config)}
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.device("meta"):
            dit = LTXAVModel(**cfg, dtype=torch.bfloat16, device="meta", operations=comfy.ops.disable_weight_init)
        sd = {f"model.diffusion_model.{k}": v
              for k, v in _random_state(dit.state_dict(), torch.bfloat16, gen, device).items()}
        del dit
        vae = VideoVAE(version=2)
        sd.update({f"vae.{k}": v for k, v in _random_state(vae.state_dict(), torch.bfloat16, gen, device,
                                                             keep=dict(vae.named_buffers())).items()})
        audio = AudioVAE(metadata=metadata)
        buffers = dict(audio.named_buffers())
        for k, v in _random_state(audio.state_dict(), torch.float32, gen, device, keep=buffers).items():
            sd["audio_vae." + k.removeprefix("autoencoder.") if k.startswith("autoencoder.") else k] = v
        gemma_width = 3840
    # The Gemma-to-DiT projection ships in the checkpoint (ComfyUI's LTXAV text encoder loads it from there).
    gen = torch.Generator().manual_seed(1)
    width_in = gemma_width * (GEMMA_LAYERS + 1)
    for part, width in (("video", cfg["cross_attention_dim"]), ("audio", cfg["audio_cross_attention_dim"])):
        sd[f"text_embedding_projection.{part}_aggregate_embed.weight"] = (
            torch.randn(width, width_in, generator=gen) * width_in ** -0.5).to(torch.bfloat16)
        sd[f"text_embedding_projection.{part}_aggregate_embed.bias"] = torch.zeros(width, dtype=torch.bfloat16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)


def write_text_encoder(path: Path, tiny: bool, device: torch.device) -> None:
    """Gemma 3 12B (ComfyUI's own module layout) with random fp8 e4m3fn matrices (norms and other vectors in fp32)
    and a locally trained tokenizer."""
    import comfy.ops
    from comfy.text_encoders import llama
    from safetensors.torch import save_file

    with torch.device("meta"):
        model = llama.Gemma3_12B({}, torch.bfloat16, "meta", comfy.ops.disable_weight_init)
    gen = torch.Generator(device=device).manual_seed(2)
    sd = _random_state(model.state_dict(), torch.float8_e4m3fn, gen, device)
    sd["spiece_model"] = torch.frombuffer(bytearray(train_tokenizer(TOKENIZER_VOCAB)), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def main() -> None:
    """Run as its own process by ``acceptance_comfyui.py``, so that no CUDA context of the writer stays on the GPU
    while the servers run."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--comfyui-root", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, args.comfyui_root)
    from comfy.cli_args import args as comfy_args

    comfy_args.cpu = args.tiny
    if args.tiny:
        from acceptance_tiny import narrow_gemma

        narrow_gemma()
    device = torch.device("cpu" if args.tiny else "cuda")
    models = Path(args.models)
    if not (models / "checkpoints" / CHECKPOINT).exists():
        write_checkpoint(models / "checkpoints" / CHECKPOINT, args.tiny, device)
    if not (models / "text_encoders" / TEXT_ENCODER).exists():
        write_text_encoder(models / "text_encoders" / TEXT_ENCODER, args.tiny, device)


if __name__ == "__main__":
    main()
