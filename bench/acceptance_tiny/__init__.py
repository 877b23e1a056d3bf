"""Test-only custom node for ``acceptance_comfyui.py --tiny``: makes the server build ComfyUI's Gemma 3 12B text
encoder at width 16 (all 48 layers and the module layout kept), so the script's whole HTTP path can be rehearsed on
a CPU. Never linked into a real ComfyUI: the full-size run uses the real architecture."""

from __future__ import annotations

import dataclasses

WIDTHS = {"vocab_size": 512, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
          "num_key_value_heads": 1, "head_dim": 8}


def narrow_gemma() -> None:
    from comfy.text_encoders import llama, lt

    if getattr(llama.Gemma3_12B_Config, "acceptance_tiny", False):
        return

    @dataclasses.dataclass
    class TinyGemma3Config(llama.Gemma3_12B_Config):
        vocab_size: int = WIDTHS["vocab_size"]
        hidden_size: int = WIDTHS["hidden_size"]
        intermediate_size: int = WIDTHS["intermediate_size"]
        num_attention_heads: int = WIDTHS["num_attention_heads"]
        num_key_value_heads: int = WIDTHS["num_key_value_heads"]
        head_dim = WIDTHS["head_dim"]
        vision_config = {"num_channels": 3, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 16,
                         "image_size": 28, "intermediate_size": 32, "model_type": "siglip_vision_model",
                         "num_attention_heads": 2, "num_hidden_layers": 1, "patch_size": 14}
        mm_tokens_per_image = 4
        acceptance_tiny = True

    llama.Gemma3_12B_Config = TinyGemma3Config
    wide = lt.DualLinearProjection

    class NarrowProjection(wide):
        def __init__(self, in_dim, out_dim_video, out_dim_audio, **kwargs):
            # 16 and 8: the tiny checkpoint's video and audio cross-attention widths (tests/comfy/tiny_checkpoint).
            super().__init__(WIDTHS["hidden_size"] * (in_dim // 3840), 16, 8, **kwargs)

    lt.DualLinearProjection = NarrowProjection


narrow_gemma()
NODE_CLASS_MAPPINGS: dict = {}
