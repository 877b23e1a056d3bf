"""Never train a gate into NaN: gate projections stay out of targets unless named; a non-finite LoRA is never
written (the peer failure: every to_gate_logits tensor NaN, black video)."""

import pytest
import torch

from tiny import tiny_denoiser
from trainer_core.output.lora_file import NonFiniteLoraError, save_comfy_lora
from trainer_core.training.config import RECIPES
from trainer_core.training.lora import TARGET_PRESETS, select_targets


def test_no_preset_recipe_or_broad_pattern_selects_a_gate():
    candidates = tiny_denoiser().lora_targets()
    assert any(n.endswith("to_gate_logits") for n in candidates), "the tiny 2.3 model must have gated attention"
    broad = [list(TARGET_PRESETS), [r"re:transformer_blocks\.\d+\..*"], ["attn1"], ["re:.*"]]
    broad += [list(r["targets"]) for r in RECIPES.values()]
    for patterns in broad:
        try:
            chosen = select_targets(candidates, patterns)
        except ValueError:
            continue
        assert not [n for n in chosen if "gate" in n], patterns
    everything = select_targets(candidates, ["re:.*"])
    assert len(everything) == len([n for n in candidates if not n.endswith("to_gate_logits")])


def test_a_pattern_naming_the_gate_still_selects_it():
    chosen = select_targets(tiny_denoiser().lora_targets(), ["to_gate_logits"])
    assert len(chosen) == 2 * 6 and all(n.endswith(".to_gate_logits") for n in chosen)


def _weights(bad_module=None, value=float("nan")):
    weights = {f"transformer_blocks.0.attn1.{p}": (torch.randn(4, 16), torch.randn(16, 4))
               for p in ("to_q", "to_k", "to_gate_logits")}
    if bad_module:
        A, B = weights[bad_module]
        B[3, 1] = value
    return weights


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_save_refuses_non_finite_weights_and_names_the_module(tmp_path, value):
    path = tmp_path / "lora.safetensors"
    with pytest.raises(NonFiniteLoraError, match=r"transformer_blocks\.0\.attn1\.to_gate_logits\.lora_B \(1 of 64"):
        save_comfy_lora(path, _weights("transformer_blocks.0.attn1.to_gate_logits", value), {})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_overflow_in_the_saved_dtype_is_caught(tmp_path):
    weights = _weights()
    weights["transformer_blocks.0.attn1.to_q"][0][0, 0] = 1e6
    with pytest.raises(NonFiniteLoraError, match="to_q.lora_A"):
        save_comfy_lora(tmp_path / "a.safetensors", weights, {}, dtype=torch.float16)
    info = save_comfy_lora(tmp_path / "b.safetensors", weights, {}, dtype=torch.bfloat16)
    assert info["modules"] == 3
