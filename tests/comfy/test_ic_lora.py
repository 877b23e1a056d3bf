"""IC-LoRA end to end on a tiny LTX-2.3 checkpoint in ComfyUI: clip.mp4 + clip.ref.mp4 pairs made by colour
inversion -> Dataset Loader -> Frame Trimmer -> Latent Precompute (reference at downscale factor 2) -> LoRA Trainer
(IC) -> Save Comfy LoRA (factor in the file, loads in stock LoraLoaderModelOnly) -> Validation Sweep with a held-out
reference: generations come measurably closer to the inverted ground truth than the base model's."""

from __future__ import annotations

import logging

import pytest
import tiny_checkpoint as tc
import torch
from comfy_harness import FakeClip
from safetensors import safe_open

log = logging.getLogger(__name__)
CAPTION = "the same scene with inverted colours"
SIZE = 128
FRAMES = 9


def _pattern(seed: int) -> torch.Tensor:
    """``[F, H, W, 3]`` in 0..1: smooth random colour fields drifting sideways, different per seed."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 4, 6, generator=gen)
    field = torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE + 5 * FRAMES), mode="bilinear",
                                            align_corners=False)[0].permute(1, 2, 0)
    return torch.stack([field[:, 5 * t: 5 * t + SIZE] for t in range(FRAMES)])


def _write(path, frames):
    from trainer_core.output.sweep_grid import to_uint8, write_mp4

    write_mp4(path, to_uint8(frames), 24.0)


@pytest.fixture(scope="module")
def trained(run_node, comfy_pack, tiny_ltx23_ckpt, tmp_path_factory):
    model, _, vae = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    root = tmp_path_factory.mktemp("ic") / "pairs"
    root.mkdir()
    for i in range(6):
        ref = _pattern(i)
        _write(root / f"clip{i}.ref.mp4", ref)
        _write(root / f"clip{i}.mp4", 1 - ref)
        (root / f"clip{i}.txt").write_text(CAPTION)
    dataset, _ = run_node("LTX23Trainer_DatasetLoader", folder=str(root), recursive=False, trigger_word="",
                          trigger_position="start", strict=False)
    samples, _, _ = run_node("LTX23Trainer_FrameTrimmer", dataset=dataset, buckets=f"{SIZE}x{SIZE}x{FRAMES}",
                             target_fps=0.0, window="start", max_windows=1, no_upscale=False, seed=0)
    cache, summary, _ = run_node("LTX23Trainer_LatentPrecompute", samples=samples, vae=vae,
                                 clip=FakeClip(tc.raw_text_width("2.3")), model=model,
                                 cache_folder=str(root.parent / "cache"), validation_prompts=CAPTION,
                                 decode_check=0, reference_downscale_factor=2)
    lora, _, loss, report = run_node("LTX23Trainer_LoraTrainer", model=model, latent_cache=cache, recipe="ic",
                                     run_name="ic-test", steps=100, rank=8, alpha=8.0, learning_rate=6e-3,
                                     trigger_word="", resume=False, seed=0, caption_dropout=0.0,
                                     checkpoint_every=100, keep_checkpoints=1, mixed_precision="no")
    return model, vae, cache, lora, loss, report


def test_ic_lora_trains_saves_with_its_factor_and_loads_in_stock_comfyui(run_node, trained, comfy_env, caplog):
    model, _, cache, lora, loss, report = trained
    assert cache.open().item(0).reference_latents.shape == (128, 2, 2, 2)
    assert "IC-LoRA at reference downscale factor 2" in report
    losses = loss["loss"]
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20, "the IC-LoRA did not learn"
    (name, _) = run_node("LTX23Trainer_SaveComfyLora", lora=lora, filename_prefix="ltx23/ic_test", model=model)
    with safe_open(str(comfy_env.path("models", "loras") / name), "pt") as fh:
        meta = fh.metadata()
    assert meta["reference_downscale_factor"] == "2" and meta["strategy"] == "ic"
    assert "reference_temporal_scale_factor" not in meta
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        (patched,) = run_node("LoraLoaderModelOnly", model=model, lora_name=name, strength_model=1.0)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(set(patched.patches) - set(model.patches)) == int(meta["lora_modules"])
    card = run_node("LTX23Trainer_LoraInspector", lora_name=name)[0]
    assert "strategy: ic" in card and "reference_downscale_factor: 2" in card


def test_sweep_with_a_held_out_reference_gets_closer_to_the_ground_truth(run_node, trained):
    """Held out: a pattern no pair was made of. The IC-LoRA at strength 1 comes measurably closer to its inverted
    ground truth than the base model does under the same guide, and the grid shows reference | strengths | truth."""
    from trainer_core.output.sweep_grid import to_uint8

    model, vae, cache, lora, _, _ = trained
    held_out = _pattern(100)
    args = dict(model=model, vae=vae, lora=lora, cache=cache, trigger="", trigger_prompts=CAPTION,
                off_topic_prompts="", seeds=2, first_seed=0, steps=8, cfg=1.0, width=SIZE, height=SIZE,
                frames=FRAMES, fps=24.0, save_clips=False, ground_truth=1 - held_out, preset="custom")
    sweep, recommended, report, grid_frame, _ = run_node("LTX23Trainer_ValidationSweep", strengths="0, 0.5, 1.0",
                                                      reference=held_out, **args)
    log.info("IC sweep on a held-out pair:\n%s", report)
    scores = {s["strength"]: s for s in sweep["scores"]["strengths"]}
    assert sweep["reference_downscale_factor"] == 2
    assert scores[1.0]["improvement"] > 0.2, report
    assert scores[1.0]["error"] < scores[0.5]["error"] < scores[0.0]["error"]
    assert recommended == 1.0
    # Grid: a label column (160 px) then reference | 0 | 0.5 | 1.0 | ground truth, one row per seed.
    frame = grid_frame[0]
    assert frame.shape[1] == 160 + 5 * SIZE
    top = frame.shape[0] - 2 * SIZE
    truth_cell = frame[top:top + SIZE, 160 + 4 * SIZE:]
    assert torch.equal((truth_cell * 255).round().to(torch.uint8), to_uint8(1 - held_out)[FRAMES // 2])
