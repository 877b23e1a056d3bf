"""A sweep's result written back into a saved LoRA's run card; the run card's training fields; sweep presets."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tiny import tiny_data, tiny_denoiser
from trainer_core.output.card_update import read_header, sweep_card, write_card
from trainer_core.output.lora_file import PACK_NAME, read_lora, save_comfy_lora
from trainer_core.output.sweep_presets import apply_preset
from trainer_core.training.config import recipe_config
from trainer_core.training.trainer import LoraTrainer


def _weights():
    g = torch.Generator().manual_seed(0)
    return {f"transformer_blocks.{i}.attn1.to_q": (torch.randn(4, 16, generator=g), torch.randn(16, 4, generator=g))
            for i in range(3)}


def test_sweep_result_is_written_into_the_files_metadata_and_tensors_stay_byte_identical(tmp_path):
    path = tmp_path / "mine.safetensors"
    save_comfy_lora(path, _weights(), {"pack": PACK_NAME, "trigger_word": "sks"}, dtype=torch.float32)
    before = read_lora(path)
    _, data_offset = read_header(path)
    tensor_bytes = path.read_bytes()[data_offset:]

    scores = {"recommended": 0.75, "strengths": [{"strength": 0.0}, {"strength": 0.75}]}
    assert write_card(path, sweep_card(0.75, "validation sweep (dev mode, 20 steps)", scores))

    header, new_offset = read_header(path)
    assert new_offset % 8 == 0
    assert path.read_bytes()[new_offset:] == tensor_bytes
    after = read_lora(path)
    assert after.metadata["recommended_strength"] == "0.75"
    assert after.metadata["recommended_strength_source"] == "validation sweep (dev mode, 20 steps)"
    assert json.loads(after.metadata["validation_sweep"]) == scores
    assert after.metadata["trigger_word"] == "sks"
    for name, (A, B) in before.weights.items():
        assert torch.equal(after.weights[name][0], A) and torch.equal(after.weights[name][1], B)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_no_effect_is_recorded_as_none():
    assert sweep_card(None, "validation sweep", None) == {"recommended_strength": "none",
                                                          "recommended_strength_source": "validation sweep"}


def test_files_other_tools_wrote_are_left_untouched(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.ones(4, 16),
               "diffusion_model.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.ones(16, 4)}, str(path),
              metadata={"ss_base_model_version": "ltx-2.3"})
    original = path.read_bytes()
    assert write_card(path, sweep_card(1.0, "validation sweep", None)) is False
    assert path.read_bytes() == original


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\xff" * 16)
    with pytest.raises(ValueError, match="not a safetensors file"):
        write_card(path, {"recommended_strength": "1"})


def test_run_card_names_the_loaders_fingerprint_the_learning_rate_and_the_schedule(tmp_path):
    d = tiny_denoiser()
    cfg = recipe_config("style", steps=2, rank=4, alpha=4, learning_rate=3e-4, schedule="cosine", warmup_steps=1,
                        mixed_precision="no", gradient_checkpointing=False, checkpoint_every=2)
    data = tiny_data(d)
    trainer = LoraTrainer(d, data, cfg, tmp_path, buckets=("64x64x9",), dataset_fingerprint="f" * 64)
    trainer.run()
    path = tmp_path / "lora.safetensors"
    trainer.save_lora(path)
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    assert meta["dataset_fingerprint"] == "f" * 64
    assert meta["latent_cache_fingerprint"] == data.fingerprint()
    assert (meta["learning_rate"], meta["lr_schedule"], meta["lr_warmup_steps"]) == ("0.0003", "cosine", "1")
    assert json.loads(meta["resolution_buckets"]) == ["64x64x9"]


def test_quick_preset_is_a_few_cells_and_custom_keeps_the_users_choice():
    lines = (["t1", "t2", "t3"], ["o1", "o2"], [])
    quick = apply_preset("quick", *lines, strengths=[0.0, 0.3], seeds=5, save_clips=True, size=(768, 512, 49))
    assert (quick.trigger_prompts, quick.off_topic_prompts, quick.seeds) == (["t1"], ["o1"], 2)
    assert quick.strengths == [0.0, 0.5, 1.0] and quick.save_clips is False and quick.size == (320, 192, 17)
    thorough = apply_preset("thorough", *lines, strengths=[0.0, 0.3], seeds=5, save_clips=False, size=(64, 64, 9))
    assert thorough.trigger_prompts == ["t1", "t2", "t3"] and thorough.seeds == 3 and thorough.save_clips
    custom = apply_preset("custom", *lines, strengths=[0.0, 0.3], seeds=5, save_clips=False, size=(64, 64, 9))
    assert (custom.strengths, custom.seeds, custom.save_clips, custom.size) == ([0.0, 0.3], 5, False, (64, 64, 9))
    with pytest.raises(ValueError, match="quick, thorough, custom"):
        apply_preset("fast", *lines, strengths=[0.0], seeds=1, save_clips=False, size=(64, 64, 9))
