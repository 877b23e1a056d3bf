"""The README's main job, end to end on CPU: clips in, a ComfyUI-format LoRA out; a re-run reuses the cache."""

import json

from safetensors import safe_open

from trainer_core import demo
def test_demo_writes_a_lora_and_reuses_its_cache(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--steps", "30"]) == 0
    first = capsys.readouterr().out
    lora = tmp_path / "loras" / "ltx23_demo_lora.safetensors"
    with safe_open(str(lora), "pt") as fh:
        keys = set(fh.keys())
        meta = fh.metadata()
    assert len(keys) == 16 * 3 and all(k.startswith("diffusion_model.transformer_blocks.") for k in keys)
    assert meta["base_model_version"] == "ltx-2.3" and meta["trigger_word"] == "sks"
    assert json.loads(meta["resolution_buckets"]) == ["128x96x17", "128x96x25"]
    assert "encoded: text 5, media 4" in first
    assert (tmp_path / "run" / "checkpoints" / "step_000030.ckpt").exists()

    assert demo.main(["--out", str(tmp_path), "--steps", "30"]) == 0
    assert "reused: text 5, media 4" in capsys.readouterr().out
