"""A tiny random-weight Gemma 3 text encoder that ComfyUI's own LTX-2.3 loader (``LTXAVTextEncoderLoader``) loads.

ComfyUI fixes the Gemma 3 12B architecture in ``comfy.text_encoders.llama.Gemma3_12B_Config`` and recognises the
Gemma half of the LTX pair by the key ``model.layers.47.self_attn.q_norm.weight``. So the tiny encoder keeps all 48
layers and the full module structure (text stack, SigLIP vision tower, multi-modal projector) but shrinks every
width: ``tiny_gemma_config`` swaps ComfyUI's config class for a narrow subclass while the test runs. The tokenizer is
a SentencePiece model trained here on a few sentences, with Gemma's special ids (pad 0, eos 1, bos 2, unk 3) and a
vocabulary larger than 106 (``<end_of_turn>``), and travels inside the file as ``spiece_model`` like the real one.
"""

from __future__ import annotations

import dataclasses
import io
import os

import torch

VOCAB = 320
TEXT_LAYERS = 48
VISION_CONFIG = {"num_channels": 3, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 16, "image_size": 28,
                 "intermediate_size": 32, "model_type": "siglip_vision_model", "num_attention_heads": 2,
                 "num_hidden_layers": 1, "patch_size": 14}
TOKENS_PER_IMAGE = 4
"""28 px / 14 px patches = 2x2 patches per frame, pooled 1:1: four soft tokens for every frame."""

_CORPUS = [
    "a woman with brown hair walks along a beach at sunset while waves roll in",
    "the camera slowly pans left across a quiet street with parked cars",
    "a man in a red jacket speaks to the camera in a calm voice",
    "soft footsteps on tile, distant traffic and birdsong fill the scene",
    "close-up of hands pouring coffee into a white ceramic cup",
    "style: cinematic realistic, warm light, shallow depth of field",
]


def tiny_config_class():
    """A ``Gemma3_12B_Config`` subclass with narrow widths and the 48 layers ComfyUI's detection needs."""
    from comfy.text_encoders import llama

    @dataclasses.dataclass
    class TinyGemma3Config(llama.Gemma3_12B_Config):
        vocab_size: int = VOCAB
        hidden_size: int = 16
        intermediate_size: int = 32
        num_hidden_layers: int = TEXT_LAYERS
        num_attention_heads: int = 2
        num_key_value_heads: int = 1
        head_dim = 8
        vision_config = VISION_CONFIG
        mm_tokens_per_image = TOKENS_PER_IMAGE

    return TinyGemma3Config


def train_tokenizer() -> bytes:
    """A SentencePiece model proto with Gemma's special ids, trained on ``_CORPUS``."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 20), model_writer=model, vocab_size=VOCAB, model_type="bpe",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, hard_vocab_limit=False, byte_fallback=True,
        minloglevel=2, num_threads=1)
    return model.getvalue()


def build_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for every parameter of the tiny ``Gemma3_12B`` plus its tokenizer (call inside
    ``tiny_gemma_config``, so the module is built narrow)."""
    import comfy.ops
    from comfy.text_encoders import llama

    model = llama.Gemma3_12B({}, torch.float32, "cpu", comfy.ops.disable_weight_init)
    generator = torch.Generator().manual_seed(seed)
    sd = {}
    for name, tensor in model.state_dict().items():
        if tensor.ndim == 1 and "norm" in name:
            sd[name] = torch.ones_like(tensor) if name.endswith(".weight") else torch.zeros_like(tensor)
        else:
            std = 0.5 if tensor.ndim < 2 else tensor.shape[-1] ** -0.5
            sd[name] = torch.randn(tensor.shape, generator=generator).mul_(std)
    sd["spiece_model"] = torch.frombuffer(bytearray(train_tokenizer()), dtype=torch.uint8)
    return {k: v.contiguous() for k, v in sd.items()}


def write_tiny_gemma(path: str, seed: int = 0) -> str:
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(build_state_dict(seed), path)
    return path
