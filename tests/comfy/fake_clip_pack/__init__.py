"""Test-only ComfyUI custom node package: a stand-in text encoder for the tiny LTX-2.3 checkpoint.

The real LTX-2.3 text encoder is Gemma 3 12B, which cannot be made tiny, and the tiny checkpoint holds no text
encoder, so a browser test that queues Latent Precompute through a real ComfyUI server needs some CLIP to connect.
``tests/comfy/test_browser.py`` symlinks this folder into the temporary server's ``custom_nodes``; the node returns
``comfy_harness.FakeClip`` (the in-process tests' stand-in) for the raw text width the tiny model's connectors take.
Never installed for users.
"""

import os
import sys

# Loaded by ComfyUI through a symlink; the real folder sits next to comfy_harness.py.
_TESTS_COMFY = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if _TESTS_COMFY not in sys.path:
    sys.path.append(_TESTS_COMFY)

from comfy_harness import FakeClip  # noqa: E402


class LTX23TestFakeClip:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {"default": 32, "min": 1, "max": 65536,
                                               "tooltip": "tiny_checkpoint.raw_text_width(version)"})}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, width):
        return (FakeClip(width),)


NODE_CLASS_MAPPINGS = {"LTX23Test_FakeClip": LTX23TestFakeClip}
