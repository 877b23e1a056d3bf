"""The harness runs nodes as ComfyUI's executor does; these pin the behaviours tests rely on."""

from __future__ import annotations

import torch
from comfy_harness import Listed


def test_node_runs_under_inference_mode(run_node):
    (latent,) = run_node("EmptyLTXVLatentVideo", width=64, height=64, length=9, batch_size=1)
    assert latent["samples"].shape == (1, 128, 2, 2, 2)
    # As in ComfyUI: node outputs are inference tensors; training code must clone them outside inference mode.
    assert latent["samples"].is_inference()


def test_list_inputs_and_outputs(run_node):
    images = [torch.full((1, 8, 8, 3), float(i)) for i in range(4)]
    texts = [str(i) for i in range(4)]
    shuffled_images, shuffled_texts = run_node("ShuffleImageTextDataset", images=Listed(images),
                                               texts=Listed(texts), seed=3)
    assert sorted(shuffled_texts) == texts
    assert [int(img[0, 0, 0, 0]) for img in shuffled_images] == [int(t) for t in shuffled_texts]
