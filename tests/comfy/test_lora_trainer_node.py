"""The LoRA Trainer node in-process on tiny LTX-2.3 and LTX-2.0 checkpoints, fed by the pack's own data nodes:
loss falls, checkpoints appear, cancel then resume ends bit-identical, the loaded model is left as it was, and
the LoRA loads in stock LoraLoaderModelOnly with no warning and changes the output."""

from __future__ import annotations

import logging

import pytest
import tiny_checkpoint as tc
import torch
from comfy_harness import FakeClip
from safetensors.torch import load_file

TRAIN = "LTX23Trainer_LoraTrainer"


def _cache(run_node, tmp_path, model, vae, version, audio_vae=None, clips_with_audio=False):
    from trainer_core.data.sample_clips import write_sample_dataset

    folder = tmp_path / "dataset"
    if clips_with_audio:
        from media_factory import write_clip

        folder.mkdir()
        for i in range(3):
            write_clip(folder / f"clip{i}.mp4", frames=20, width=128, height=96, audio=True)
            (folder / f"clip{i}.txt").write_text(f"a noisy clip number {i}")
    else:
        write_sample_dataset(folder)
    dataset, _ = run_node("LTX23Trainer_DatasetLoader", folder=str(folder), recursive=False, trigger_word="sks",
                          trigger_position="start", strict=False)
    samples, _, _ = run_node("LTX23Trainer_FrameTrimmer", dataset=dataset, buckets="128x96x17", target_fps=0.0,
                             window="start", max_windows=1, no_upscale=False, seed=0)
    extra = {"audio_vae": audio_vae} if audio_vae is not None else {}
    cache, _, _ = run_node("LTX23Trainer_LatentPrecompute", samples=samples, vae=vae,
                           clip=FakeClip(tc.raw_text_width(version)), model=model,
                           cache_folder=str(tmp_path / "cache"), audio=audio_vae is not None, validation_prompts="",
                           decode_check=0, **extra)
    return cache


def _train(run_node, model, cache, run_name, **overrides):
    inputs = dict(model=model, latent_cache=cache, recipe="style", run_name=run_name, steps=24, rank=4, alpha=4.0,
                  learning_rate=1e-2, trigger_word="sks", resume=False, seed=3, caption_dropout=0.0,
                  checkpoint_every=8, keep_checkpoints=0, mixed_precision="no")
    inputs.update(overrides)
    return run_node(TRAIN, **inputs)


@pytest.fixture(scope="module")
def ltx23(run_node, comfy_pack, tiny_ltx23_ckpt, tmp_path_factory):
    model, _, vae = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    return model, _cache(run_node, tmp_path_factory.mktemp("ltx23"), model, vae, "2.3")


def _mean(values):
    return sum(values) / len(values)


def test_trains_writes_checkpoints_and_leaves_the_loaded_model_alone(ltx23, run_node, comfy_env):
    model, cache = ltx23
    probe = tc.build_inputs(model, frames=3, height=3, width=4)
    before = tc.dit_forward(model, probe)
    lora, model_out, loss, report = _train(run_node, model, cache, "plain", steps=40)
    losses = loss["loss"]
    assert len(losses) == 40 and all(torch.isfinite(torch.tensor(losses)))
    assert _mean(losses[-10:]) < 0.9 * _mean(losses[:10]), losses
    ckpts = sorted(p.name for p in comfy_env.path("output", "ltx23_trainer", "runs", "plain", "checkpoints").iterdir())
    assert ckpts == [f"step_{s:06d}.{ext}" for s in (8, 16, 24, 32, 40) for ext in ("ckpt", "safetensors")]
    assert lora.path.endswith("step_000040.safetensors") and lora.metadata["base_model_version"] == "ltx-2.3"
    assert "training forward matches ComfyUI" in report
    after = tc.dit_forward(model, probe)
    assert all(torch.equal(a, b) for a, b in zip(before, after)), "the loaded MODEL must sample exactly as before"
    assert all(p.is_inference() for p in model.model.diffusion_model.parameters())
    with_lora = tc.dit_forward(model_out, probe)
    assert not torch.allclose(with_lora[0], before[0])


def test_the_lora_loads_in_stock_loraloader_without_warnings(ltx23, run_node, comfy_env, caplog):
    import shutil

    model, cache = ltx23
    lora, model_out, _, _ = _train(run_node, model, cache, "for_loader", steps=8)
    name = "pack-trained.safetensors"
    shutil.copy(lora.path, comfy_env.path("models", "loras", name))
    with caplog.at_level(logging.WARNING):
        (loaded,) = run_node("LoraLoaderModelOnly", model=model, lora_name=name, strength_model=1.0)
    assert "lora key not loaded" not in caplog.text
    assert len(loaded.patches) == len(lora.weights) == 2 * (8 + 2)
    probe = tc.build_inputs(model, frames=3, height=3, width=4)
    base, stock, ours = (tc.dit_forward(m, probe)[0] for m in (model, loaded, model_out))
    assert not torch.allclose(stock, base)
    # The node's MODEL output carries the same LoRA as the file (bf16 in the file, so not bit-equal).
    assert torch.allclose(stock, ours, rtol=2e-2, atol=2e-3)


def test_cancel_then_resume_ends_bit_identical(ltx23, run_node, comfy_env, monkeypatch):
    import comfy.model_management as mm

    model, cache = ltx23
    straight, _, straight_loss, _ = _train(run_node, model, cache, "straight")

    calls = {"n": 0}
    real = mm.processing_interrupted

    def interrupt_at_step_ten():
        calls["n"] += 1
        if calls["n"] == 11:
            mm.interrupt_current_processing(True)
        return real()

    monkeypatch.setattr(mm, "processing_interrupted", interrupt_at_step_ten)
    with pytest.raises(mm.InterruptProcessingException):
        _train(run_node, model, cache, "interrupted")
    monkeypatch.setattr(mm, "processing_interrupted", real)
    run_dir = comfy_env.path("output", "ltx23_trainer", "runs", "interrupted", "checkpoints")
    assert (run_dir / "step_000010.ckpt").exists(), "cancel must leave a resumable checkpoint"

    resumed, _, resumed_loss, _ = _train(run_node, model, cache, "interrupted", resume=True)
    assert resumed_loss["loss"] == straight_loss["loss"]
    a, b = load_file(straight.path), load_file(resumed.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_checkpoints_and_new_runs_never_overwrite(ltx23, run_node, comfy_env):
    model, cache = ltx23
    with pytest.raises(ValueError, match="nothing to resume"):
        _train(run_node, model, cache, "never_ran", resume=True)
    _train(run_node, model, cache, "twice", steps=2)
    second, _, _, _ = _train(run_node, model, cache, "twice", steps=2)
    assert "/runs/twice_2/checkpoints/" in second.path


def test_ltx20_checkpoint_trains(run_node, comfy_pack, tiny_ltx20_ckpt, tmp_path):
    model, _, vae = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx20_ckpt)
    cache = _cache(run_node, tmp_path, model, vae, "2.0")
    lora, _, loss, _ = _train(run_node, model, cache, "ltx20", steps=30)
    assert lora.metadata["base_model_version"] == "ltx-2.0"
    assert _mean(loss["loss"][-8:]) < 0.9 * _mean(loss["loss"][:8])


def test_audio_and_video_latents_train_both_streams(run_node, comfy_pack, tiny_ltx23_ckpt, tmp_path):
    model, _, vae = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    (audio_vae,) = run_node("LTXVAudioVAELoader", ckpt_name=tiny_ltx23_ckpt)
    cache = _cache(run_node, tmp_path, model, vae, "2.3", audio_vae=audio_vae, clips_with_audio=True)
    assert cache.has_audio
    lora, _, loss, _ = _train(run_node, model, cache, "av", steps=16, train_audio=True,
                              targets="video_attn audio_attn av_cross_attn")
    assert all(torch.isfinite(torch.tensor(loss["loss"])))
    trained = {n for n, (_, B) in lora.weights.items() if torch.any(B)}
    assert any(".audio_attn1." in n for n in trained) and any(".audio_to_video_attn." in n for n in trained)
    assert any(".video_to_audio_attn." in n for n in trained)


def test_a_run_that_will_not_fit_stops_before_training_and_names_fixes(ltx23, run_node, comfy_pack, comfy_env,
                                                                        monkeypatch):
    import importlib

    node_module = importlib.import_module(f"{comfy_pack.module.__name__}.comfy_adapters.training")
    model, cache = ltx23
    monkeypatch.setattr(node_module, "device_memory_available", lambda device: 64 * 1024)
    with pytest.raises(ValueError, match="GPU memory") as failure:
        _train(run_node, model, cache, "too_big")
    assert "Fix:" in str(failure.value) and "stream" in str(failure.value)
    assert not comfy_env.path("output", "ltx23_trainer", "runs", "too_big").exists()


def test_the_estimate_is_refined_by_measured_steps(ltx23, run_node, comfy_pack, monkeypatch):
    import importlib

    progress = importlib.import_module(f"{comfy_pack.module.__name__}.comfy_adapters.progress")
    model, cache = ltx23
    shown = []
    publish = progress.TrainingProgress.publish

    def record(self, state, **fields):
        shown.append((state, dict(self.estimate or {}).get("time")))
        publish(self, state, **fields)

    monkeypatch.setattr(progress.TrainingProgress, "publish", record)
    _train(run_node, model, cache, "probed", steps=8)
    (status,) = [s for s in progress.status_snapshot().values() if s["run_name"] == "probed"]
    assert status["state"] == "done" and len(status["losses"]) == 8 and status["node"] == "1"
    assert status["key"] == f"{status['prompt_id']}:1"
    # Every step replaces the pre-flight guess with the measured speed; the end says how long it took.
    running = [t for state, t in shown if state == "running"]
    assert len(running) == 8 and all(t.endswith("left (measured)") for t in running)
    assert status["estimate"]["time"].startswith("finished in ") and status["estimate"]["samples"] == 4


def test_trains_on_an_fp8_weight_model(ltx23, run_node, comfy_env, tiny_ltx23_ckpt):
    """ComfyUI's fp8 weight storage (UNETLoader weight_dtype fp8_e4m3fn; computation casts each weight up per use):
    the same node trains through it without touching the fp8 weights."""
    import os

    _, cache = ltx23
    os.link(comfy_env.path("models", "checkpoints", tiny_ltx23_ckpt),
            comfy_env.path("models", "diffusion_models", "tiny-fp8.safetensors"))
    (model,) = run_node("UNETLoader", unet_name="tiny-fp8.safetensors", weight_dtype="fp8_e4m3fn")
    linear = model.model.diffusion_model.transformer_blocks[0].attn1.to_q
    assert linear.weight.dtype == torch.float8_e4m3fn
    before = linear.weight.clone()
    lora, model_out, loss, _ = _train(run_node, model, cache, "fp8", steps=30)
    assert all(torch.isfinite(torch.tensor(loss["loss"])))
    assert _mean(loss["loss"][-8:]) < 0.9 * _mean(loss["loss"][:8])
    assert all(torch.any(B) for _, B in lora.weights.values())
    assert torch.equal(linear.weight.view(torch.uint8), before.view(torch.uint8))
    probe = tc.build_inputs(model, frames=3, height=3, width=4)
    # As in a workflow: ComfyUI patches fp8 weights (stochastic rounding) inside inference mode.
    with torch.inference_mode():
        assert not torch.allclose(tc.dit_forward(model_out, probe)[0], tc.dit_forward(model, probe)[0])
