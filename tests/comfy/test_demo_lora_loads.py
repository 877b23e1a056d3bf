"""The LoRA the README's main-job command writes loads in stock LoraLoaderModelOnly on a tiny LTX-2.3 checkpoint of
the demo model's widths with no "lora key not loaded" warning, and changes the model's output."""

import logging
import shutil

import tiny_checkpoint as tc
import torch


def test_demo_lora_loads_in_comfyui(run_node, comfy_extras, comfy_env, tmp_path, caplog):
    from trainer_core import demo
    assert demo.main(["--out", str(tmp_path), "--steps", "20", "--pretrain-steps", "20"]) == 0
    shutil.copy(tmp_path / "loras" / "ltx23_demo_lora.safetensors", comfy_env.path("models", "loras", "demo.safetensors"))
    tc.write_tiny_checkpoint(str(comfy_env.path("models", "checkpoints", "demo-width.safetensors")), learnable=True)
    model, _, _ = run_node("CheckpointLoaderSimple", ckpt_name="demo-width.safetensors")
    with caplog.at_level(logging.WARNING):
        (patched,) = run_node("LoraLoaderModelOnly", model=model, lora_name="demo.safetensors", strength_model=1.0)
    assert "lora key not loaded" not in caplog.text
    assert len(patched.patches) == 16
    probe = tc.build_inputs(model, frames=2, height=3, width=4)
    assert not torch.allclose(tc.dit_forward(patched, probe)[0], tc.dit_forward(model, probe)[0])
