"""The pack's LoRA files load in stock ``LoraLoaderModelOnly`` on an LTX-2.3 model, at the intended strength.

The file under test is written by ``trainer_core.output.lora_file.save_comfy_lora`` (A, B with alpha/rank baked in,
``alpha = rank``). Foreign files (alpha != rank, or no alpha, as ltx-trainer writes) are hand-built on purpose:
the pack never writes them, they document what ComfyUI does with them.
"""

from __future__ import annotations

import logging

import pytest
import tiny_checkpoint as tc
import torch
from safetensors.torch import load_file, safe_open, save_file

RANK = 4
MODULES = tuple(f"transformer_blocks.{block}.{attn}.{proj}"
                for block in range(tc.NUM_LAYERS)
                for attn in ("attn1", "attn2")
                for proj in ("to_q", "to_k", "to_v", "to_out.0"))


@pytest.fixture(scope="module")
def base_model(tiny_ltx23_ckpt):
    model, _, _ = tc.load_checkpoint(tiny_ltx23_ckpt)
    assert tc.is_ltx23(model)
    return model


@pytest.fixture(scope="module")
def lora_weights(base_model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (A [r, in], B [out, r])}: small enough that the model output stays near-linear in strength."""
    generator = torch.Generator().manual_seed(1)
    dit = base_model.model.diffusion_model
    weights = {}
    for name in MODULES:
        out_features, in_features = dit.get_submodule(name).weight.shape
        weights[name] = (torch.randn(RANK, in_features, generator=generator) * 0.05,
                         torch.randn(out_features, RANK, generator=generator) * 0.05)
    return weights


@pytest.fixture(scope="module")
def loras_dir(comfy_env):
    return comfy_env.path("models", "loras")


@pytest.fixture(scope="module")
def pack_lora(lora_weights, loras_dir) -> str:
    from trainer_core.output.lora_file import save_comfy_lora

    name = "tiny-ltx23-pack.safetensors"
    # fp32 so weight deltas compare exactly; the dtype of the file is not what these tests are about.
    summary = save_comfy_lora(loras_dir / name, lora_weights, {"recipe": "test"}, dtype=torch.float32)
    assert summary["modules"] == len(MODULES)
    return name


def write_lora(path, weights, alpha: float | None) -> None:
    """PEFT-style ``diffusion_model.`` A/B file with the given ``.alpha`` (none when ``alpha`` is None)."""
    tensors = {}
    for name, (A, B) in weights.items():
        tensors[f"diffusion_model.{name}.lora_A.weight"] = A.contiguous()
        tensors[f"diffusion_model.{name}.lora_B.weight"] = B.contiguous()
        if alpha is not None:
            tensors[f"diffusion_model.{name}.alpha"] = torch.tensor(float(alpha))
    save_file(tensors, str(path))


def strip_alpha(src, dst) -> None:
    with safe_open(str(src), framework="pt") as fh:
        metadata = fh.metadata()
    save_file({k: v for k, v in load_file(str(src)).items() if not k.endswith(".alpha")}, str(dst), metadata=metadata)


def apply_lora(run_node, model, lora_name: str, strength: float, caplog):
    """Stock LoraLoaderModelOnly; fails on any key ComfyUI could not map."""
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        (patched,) = run_node("LoraLoaderModelOnly", model=model, lora_name=lora_name, strength_model=strength)
    not_loaded = [r.getMessage() for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert not not_loaded, not_loaded
    return patched


def loaded_weights(model) -> dict[str, torch.Tensor]:
    """The target weights as ComfyUI runs them: patches merged by ``load_models_gpu``."""
    import comfy.model_management

    comfy.model_management.load_models_gpu([model], force_full_load=True)
    dit = model.model.diffusion_model
    return {name: dit.get_submodule(name).weight.detach().clone() for name in MODULES}


def weight_deltas(run_node, base_model, lora_name, strength, caplog) -> dict[str, torch.Tensor]:
    base = loaded_weights(base_model)
    patched = loaded_weights(apply_lora(run_node, base_model, lora_name, strength, caplog))
    return {name: patched[name] - base[name] for name in MODULES}


def assert_deltas(deltas, lora_weights, scale: float):
    for name, (A, B) in lora_weights.items():
        torch.testing.assert_close(deltas[name], scale * (B @ A), rtol=1e-4, atol=1e-6, msg=name)


def test_every_module_is_patched(base_model, pack_lora, run_node, caplog):
    patched = apply_lora(run_node, base_model, pack_lora, 1.0, caplog)
    new_keys = set(patched.patches) - set(base_model.patches)
    assert new_keys == {f"diffusion_model.{name}.weight" for name in MODULES}
    assert not base_model.patches, "LoraLoaderModelOnly must patch a clone, never its input MODEL"


def test_lora_changes_the_output_and_unloads_cleanly(base_model, pack_lora, run_node, caplog):
    inputs = tc.build_inputs(base_model)
    before = tc.dit_forward(base_model, inputs)
    with_lora = tc.dit_forward(apply_lora(run_node, base_model, pack_lora, 1.0, caplog), inputs)
    after = tc.dit_forward(base_model, inputs)
    video_change = (with_lora[0] - before[0]).norm() / before[0].norm()
    # ~1e-2 on the tiny model; fp32 noise is ~1e-7.
    assert video_change > 1e-4, f"LoRA did not change the video output ({video_change:.2e})"
    # The clone shares the DiT's weights: switching back must restore them exactly.
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_strength_scales_the_delta(base_model, lora_weights, pack_lora, run_node, caplog):
    assert_deltas(weight_deltas(run_node, base_model, pack_lora, 1.0, caplog), lora_weights, 1.0)
    assert_deltas(weight_deltas(run_node, base_model, pack_lora, 0.5, caplog), lora_weights, 0.5)

    inputs = tc.build_inputs(base_model)
    base_video = tc.dit_forward(base_model, inputs)[0]
    full, half = (tc.dit_forward(apply_lora(run_node, base_model, pack_lora, s, caplog), inputs)[0] - base_video
                  for s in (1.0, 0.5))
    assert (half.norm() / full.norm()).item() == pytest.approx(0.5, abs=0.02)


def test_pack_lora_is_robust_to_a_dropped_alpha(base_model, lora_weights, pack_lora, loras_dir, run_node, caplog):
    """alpha = rank with the scale baked into B: readers that ignore alpha (ltx-pipelines) apply the same delta."""
    strip_alpha(loras_dir / pack_lora, loras_dir / "tiny-ltx23-pack-no-alpha.safetensors")
    deltas = weight_deltas(run_node, base_model, "tiny-ltx23-pack-no-alpha.safetensors", 1.0, caplog)
    assert_deltas(deltas, lora_weights, 1.0)


def test_missing_alpha_is_applied_at_scale_one(base_model, lora_weights, loras_dir, run_node, caplog):
    """The pitfall: ComfyUI scales by alpha/rank only when ``.alpha`` exists; without it the scale is 1.0.

    ltx-trainer trains with alpha/rank but saves no alpha, so its LoRAs are right in ComfyUI only when alpha == rank.
    """
    alpha = RANK / 4
    write_lora(loras_dir / "tiny-ltx23-alpha.safetensors", lora_weights, alpha=alpha)
    write_lora(loras_dir / "tiny-ltx23-alpha-dropped.safetensors", lora_weights, alpha=None)
    assert_deltas(weight_deltas(run_node, base_model, "tiny-ltx23-alpha.safetensors", 1.0, caplog),
                  lora_weights, alpha / RANK)
    assert_deltas(weight_deltas(run_node, base_model, "tiny-ltx23-alpha-dropped.safetensors", 1.0, caplog),
                  lora_weights, 1.0)
