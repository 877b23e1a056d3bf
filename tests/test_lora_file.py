"""The saved LoRA file: ComfyUI keys, shapes, alpha, metadata, strength; reading foreign files back."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tiny import tiny_data, tiny_denoiser
from trainer_core.training.config import recipe_config
from trainer_core.output.lora_card import filter_weights
from trainer_core.output.lora_file import read_lora, save_comfy_lora
from trainer_core.training.trainer import LoraTrainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    d = tiny_denoiser()
    cfg = recipe_config("style", steps=3, rank=4, alpha=8, learning_rate=1e-2, mixed_precision="no",
                        gradient_checkpointing=False, checkpoint_every=3, trigger="sks")
    trainer = LoraTrainer(d, tiny_data(d), cfg, out, buckets=("64x64x9",))
    trainer.run()
    path = out / "lora.safetensors"
    info = trainer.save_lora(path, dtype=torch.float32)
    return trainer, path, info


def test_keys_shapes_and_alpha_are_what_comfyui_loads(trained):
    trainer, path, info = trained
    with safe_open(str(path), "pt") as fh:
        keys = set(fh.keys())
        tensors = {k: fh.get_tensor(k) for k in keys}
        meta = fh.metadata()
    targets = trainer.denoiser.lora_targets()
    names = trainer.lora.names
    assert info["modules"] == len(names) == 2 * (4 * 2 + 2)
    assert keys == {f"diffusion_model.{n}.{s}" for n in names for s in ("lora_A.weight", "lora_B.weight", "alpha")}
    for n in names:
        A, B = tensors[f"diffusion_model.{n}.lora_A.weight"], tensors[f"diffusion_model.{n}.lora_B.weight"]
        assert A.shape == (4, targets[n].in_features) and B.shape == (targets[n].out_features, 4)
        assert tensors[f"diffusion_model.{n}.alpha"].item() == 4.0
    assert meta["base_model_version"] == "ltx-2.3" and meta["base_model_family"] == "ltx"
    assert (meta["lora_rank"], meta["lora_alpha"], meta["trigger_word"]) == ("4", "8", "sks")
    assert json.loads(meta["lora_targets"]) == ["video_attn", "video_ff"]
    assert json.loads(meta["resolution_buckets"]) == ["64x64x9"]
    assert meta["training_steps"] == "3" and meta["recipe"] == "style" and json.loads(meta["fps"]) == [24.0]
    assert meta["dataset_fingerprint"] == trainer.data.fingerprint()
    assert meta["pack_version"]


def test_comfyui_and_ltx_pipelines_apply_the_trained_delta(trained):
    """ComfyUI: strength * alpha/rank * B@A; ltx-pipelines: strength * B@A. Both must equal what training applied
    (alpha/rank of the training config times the raw B@A)."""
    trainer, path, _ = trained
    with safe_open(str(path), "pt") as fh:
        for name, adapter in trainer.lora.items():
            A = fh.get_tensor(f"diffusion_model.{name}.lora_A.weight")
            B = fh.get_tensor(f"diffusion_model.{name}.lora_B.weight")
            alpha = fh.get_tensor(f"diffusion_model.{name}.alpha").item()
            trained_delta = (adapter.lora_B @ adapter.lora_A).detach() * (8 / 4)
            assert torch.allclose(alpha / A.shape[0] * (B @ A), trained_delta, atol=1e-6)
            assert torch.allclose(B @ A, trained_delta, atol=1e-6)


def test_reads_back_our_file_and_ltx_trainer_and_kohya_files(trained, tmp_path):
    trainer, path, _ = trained
    ours = read_lora(path)
    assert ours.source_format == "ltx23-trainer" and ours.rank == 4
    expected = trainer.lora.effective_weights()
    assert set(ours.weights) == set(expected)
    for n, (A, B) in expected.items():
        assert torch.allclose(ours.weights[n][0], A) and torch.allclose(ours.weights[n][1], B)

    # ltx-trainer: PEFT keys under diffusion_model., bf16, no alpha (ComfyUI applies scale 1.0).
    peft = {f"diffusion_model.{n}.lora_{s}.weight": t.to(torch.bfloat16)
            for n, (A, B) in expected.items() for s, t in (("A", A), ("B", B))}
    save_file(peft, str(tmp_path / "lora_weights_step_00250.safetensors"))
    theirs = read_lora(tmp_path / "lora_weights_step_00250.safetensors")
    assert theirs.source_format == "peft" and set(theirs.weights) == set(expected)
    # No alpha: ComfyUI applies scale 1.0, so the read-back delta is B @ A itself (to bf16 precision), the delta
    # this run trained; an alpha/rank scale slipped in would make it 1/rank or rank times off.
    for n, (A, B) in expected.items():
        delta = theirs.weights[n][1].float() @ theirs.weights[n][0].float()
        torch.testing.assert_close(delta, B @ A, rtol=0.02, atol=0.02 * (B @ A).abs().max().item())
        assert theirs.weights[n][0].shape == A.shape and theirs.weights[n][1].shape == B.shape

    # kohya: flattened names, down/up, alpha != rank.
    kohya = {}
    for n, (A, B) in expected.items():
        flat = "lora_unet_" + n.replace(".", "_")
        kohya[f"{flat}.lora_down.weight"], kohya[f"{flat}.lora_up.weight"] = A, B / 0.5
        kohya[f"{flat}.alpha"] = torch.tensor(2.0)
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    k = read_lora(tmp_path / "kohya.safetensors")
    assert k.source_format == "kohya" and set(k.weights) == set(expected)
    for n, (A, B) in expected.items():
        assert torch.allclose(k.weights[n][1] @ k.weights[n][0], B @ A, atol=1e-6)


def test_warm_start_from_a_saved_file_continues_the_same_function(trained, tmp_path):
    trainer, path, _ = trained
    d = trainer.denoiser
    cfg = recipe_config("style", steps=1, rank=4, alpha=32, mixed_precision="no", gradient_checkpointing=False)
    fresh = LoraTrainer(d, trainer.data, cfg, tmp_path)
    assert fresh.lora.warm_start(read_lora(path).weights) == []
    for n, (A, B) in trainer.lora.effective_weights().items():
        A2, B2 = fresh.lora.effective_weights()[n]
        assert torch.allclose(B2 @ A2, B @ A, atol=1e-6)


def test_zero_adapters_can_be_dropped_and_bad_files_are_refused(tmp_path):
    A = torch.randn(2, 8)
    weights = {"transformer_blocks.0.attn1.to_q": (A, torch.randn(8, 2)),
               "transformer_blocks.0.audio_attn1.to_q": (A, torch.zeros(8, 2))}
    kept = filter_weights(weights)
    info = save_comfy_lora(tmp_path / "x.safetensors", kept.weights, {"k": "v"})
    assert info["modules"] == 1 and kept.dropped_untrained == ("transformer_blocks.0.audio_attn1.to_q",)
    with pytest.raises(ValueError, match="every adapter is zero"):
        filter_weights({"m": (A, torch.zeros(8, 2))})
    with pytest.raises(ValueError, match="weights are empty"):
        save_comfy_lora(tmp_path / "y.safetensors", {}, {})
    save_file({"diffusion_model.m.lora_A.weight": A}, str(tmp_path / "torn.safetensors"))
    with pytest.raises(ValueError, match="no matching"):
        read_lora(tmp_path / "torn.safetensors")
    save_file({"weight": A}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="is this a LoRA file"):
        read_lora(tmp_path / "model.safetensors")
