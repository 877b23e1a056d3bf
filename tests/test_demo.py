"""The README's main job, end to end on CPU: clips in, a ComfyUI-format LoRA out, with the learning check and the
sweep's recommendation printed; a re-run reuses the cache and the pre-trained base."""

import json

from safetensors import safe_open

from trainer_core import demo


def test_demo_writes_a_lora_prints_the_checks_and_reuses_its_cache(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--steps", "20", "--pretrain-steps", "20"]
    assert demo.main(args) == 0
    first = capsys.readouterr().out
    lora = tmp_path / "loras" / "ltx23_demo_lora.safetensors"
    with safe_open(str(lora), "pt") as fh:
        keys = set(fh.keys())
        meta = fh.metadata()
    assert len(keys) == 16 * 3 and all(k.startswith("diffusion_model.transformer_blocks.") for k in keys)
    assert meta["base_model_version"] == "ltx-2.3" and meta["trigger_word"] == "sks"
    assert json.loads(meta["resolution_buckets"]) == ["64x64x9"]
    assert json.loads(meta["learning_check"])["verdict"]
    for figure in ("on its own samples: Did it learn?", "binding", "bleed", "Efficacy:", "Recommended strength:"):
        assert figure in first, figure
    assert "reused from the last run" not in first
    assert (tmp_path / "run" / "checkpoints" / "step_000020.ckpt").exists()

    assert demo.main(args) == 0
    assert "reused from the last run" in capsys.readouterr().out
