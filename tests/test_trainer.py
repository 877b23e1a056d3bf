"""The training loop: learning, exact resume, frozen base, targets, checkpoints, failure handling."""

import dataclasses

import pytest
import torch

from tiny import tiny_data, tiny_denoiser
from trainer_core.training.checkpoints import list_checkpoints, load_checkpoint
from trainer_core.training.config import TrainConfig, recipe_config
from trainer_core.training.trainer import LoraTrainer, NonFiniteLoss, epoch_batches


def _cfg(**kw):
    base = dict(steps=8, rank=4, alpha=4, learning_rate=5e-3, caption_dropout=0.3, first_frame_conditioning=0.5,
                checkpoint_every=4, keep_checkpoints=0, mixed_precision="no", gradient_checkpointing=False, seed=7)
    base.update(kw)
    return recipe_config("character", **base)


def test_loss_falls_when_overfitting_a_fixed_batch(tmp_path):
    d = tiny_denoiser()
    data = tiny_data(d, n=1)
    cfg = _cfg(steps=80, learning_rate=1e-2, caption_dropout=0.0, first_frame_conditioning=0.0,
               sigma_uniform_prob=0.0, schedule="constant", checkpoint_every=80, targets=("video_attn", "video_ff"))
    losses = LoraTrainer(d, data, cfg, tmp_path).run().losses
    assert len(losses) == 80
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)


def test_only_targets_train_and_the_frozen_base_is_bit_identical(tmp_path):
    d = tiny_denoiser()
    base_before = {k: v.clone() for k, v in d.transformer.state_dict().items()}
    trainer = LoraTrainer(d, tiny_data(d), _cfg(steps=3, gradient_checkpointing=True), tmp_path)
    result = trainer.run()
    after = d.transformer.state_dict()
    assert all(torch.equal(base_before[k], after[k]) for k in base_before)
    assert set(after) == set(base_before), "LoRA must not add modules or buffers to the model"
    assert all(not p.requires_grad for p in d.transformer.parameters())
    assert result.lora.names == sorted(result.lora.names, key=lambda n: (int(n.split(".")[1]), n))
    assert len(result.lora.names) == 16 and all(".attn1." in n or ".attn2." in n for n in result.lora.names)
    # Every targeted adapter moved off its zero init; no hook is left on the model.
    assert all(torch.any(a.lora_B) for a in result.lora.adapters)
    assert all(not m._forward_hooks for m in d.transformer.modules())


def _state(result):
    return result.lora.state()


@pytest.mark.parametrize("overrides", [
    {},
    {"batch_size": 2, "gradient_accumulation": 2, "schedule": "cosine", "warmup_steps": 2},
    {"mixed_precision": "bf16", "gradient_checkpointing": True},
])
def test_interrupted_then_resumed_run_is_bit_identical(tmp_path, overrides):
    d = tiny_denoiser()
    data = tiny_data(d, n=5)
    cfg = _cfg(**overrides)
    uninterrupted = LoraTrainer(d, data, cfg, tmp_path / "straight")
    straight = uninterrupted.run()

    calls = {"n": 0}

    def stop_after_three_steps():
        calls["n"] += 1
        return calls["n"] == 4

    first = LoraTrainer(d, data, cfg, tmp_path / "split", should_stop=stop_after_three_steps).run()
    assert first.stopped and first.steps_done == 3
    resumed = LoraTrainer(d, data, cfg, tmp_path / "split")
    resumed.resume(tmp_path / "split" / "checkpoints")
    assert resumed.step == 3
    second = resumed.run()
    assert second.steps_done == 8 and not second.stopped
    assert second.losses == straight.losses
    a, b = _state(straight), _state(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The optimizer's moments and step counts continue where they stopped, not from a fresh AdamW.
    s_opt, r_opt = uninterrupted.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert len(s_opt) == len(r_opt) == len(uninterrupted.lora.trainable_parameters())
    for i, state in s_opt.items():
        assert set(state) == set(r_opt[i]) == {"step", "exp_avg", "exp_avg_sq"}
        assert all(torch.equal(state[k], r_opt[i][k]) for k in state)
        assert float(state["step"]) == 8


def test_resume_refuses_changed_settings_or_data(tmp_path):
    d = tiny_denoiser()
    data = tiny_data(d, n=2)
    LoraTrainer(d, data, _cfg(steps=4), tmp_path).run()
    longer = LoraTrainer(d, data, _cfg(steps=6), tmp_path)
    longer.resume(tmp_path / "checkpoints")
    assert longer.step == 4 and longer.run().steps_done == 6
    with pytest.raises(ValueError, match="rank: checkpoint 4, now 8"):
        LoraTrainer(d, data, _cfg(rank=8), tmp_path).resume(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match="training data changed"):
        LoraTrainer(d, tiny_data(d, n=2, seed=9), _cfg(), tmp_path).resume(tmp_path / "checkpoints")


def test_checkpoints_are_written_pruned_and_loadable(tmp_path):
    d = tiny_denoiser()
    cfg = _cfg(steps=7, checkpoint_every=2, keep_checkpoints=2)
    result = LoraTrainer(d, tiny_data(d), cfg, tmp_path).run()
    kept = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in kept] == ["step_000006.ckpt", "step_000007.ckpt"]
    assert all(p.with_suffix(".safetensors").exists() for p in kept)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    assert len(result.checkpoints) == 4
    state = load_checkpoint(tmp_path / "checkpoints")
    assert state["step"] == 7 and state["losses"] == result.losses


def test_events_report_progress(tmp_path):
    d = tiny_denoiser()
    events = []
    LoraTrainer(d, tiny_data(d), _cfg(steps=4, checkpoint_every=2), tmp_path, on_event=events.append).run()
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert all(e.loss > 0 and e.loss_ema > 0 and e.sec_per_step > 0 and e.eta_sec >= 0 for e in steps)
    assert steps[-1].eta_sec == 0
    assert [e.kind for e in events].count("checkpoint") == 2 and events[-1].kind == "done"
    assert steps[0].lr == pytest.approx(5e-3) and steps[-1].lr == pytest.approx(5e-4)


def test_non_finite_loss_stops_with_the_last_good_state(tmp_path):
    d = tiny_denoiser()
    data = tiny_data(d, n=2)
    poisoned = dataclasses.replace(data.items[1], video_latents=torch.full_like(data.items[1].video_latents, float("nan")))
    bad = type(data)([data.items[0], poisoned], data.empty, name=data.name)
    trainer = LoraTrainer(d, bad, _cfg(steps=6, caption_dropout=0.0), tmp_path)
    with pytest.raises(NonFiniteLoss, match="last good state was saved"):
        trainer.run()
    state = load_checkpoint(tmp_path / "checkpoints")
    assert state["step"] == trainer.step
    assert all(torch.isfinite(v).all() for v in state["lora"].values())


def test_learning_rate_schedules():
    lin = TrainConfig(steps=11, learning_rate=1.0, schedule="linear")
    assert [round(lin.lr_at(s), 6) for s in (0, 5, 10)] == [1.0, 0.55, 0.1]
    cos = TrainConfig(steps=11, learning_rate=1.0, schedule="cosine")
    assert cos.lr_at(0) == 1.0 and cos.lr_at(10) == pytest.approx(0.0, abs=1e-12)
    warm = TrainConfig(steps=10, learning_rate=1.0, schedule="constant", warmup_steps=3)
    assert [warm.lr_at(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_recipes_follow_the_retraining_guide():
    cfg = recipe_config("character")
    assert (cfg.rank, cfg.alpha, cfg.learning_rate, cfg.steps, cfg.batch_size) == (32, 32, 1e-4, 1500, 1)
    assert cfg.gradient_checkpointing and cfg.mixed_precision == "bf16"
    assert (cfg.checkpoint_every, cfg.caption_dropout) == (250, 0.05)
    assert "video_ff" in recipe_config("style").targets
    assert recipe_config("motion").first_frame_conditioning == 0.5
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("anime")
    with pytest.raises(ValueError, match="schedule"):
        recipe_config("character", schedule="exp")


def test_batches_group_compatible_items_and_cover_every_item():
    d = tiny_denoiser()
    small = tiny_data(d, n=3, latent=(2, 2, 2))
    big = tiny_data(d, n=2, latent=(2, 3, 3), seed=1)
    data = type(small)(small.items + big.items, small.empty)
    batches = epoch_batches(data, batch_size=2, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(5))
    for b in batches:
        assert len({data.group_key(i) for i in b}) == 1
    assert epoch_batches(data, 2, 0, 0) == batches and epoch_batches(data, 2, 0, 1) != batches


def test_audio_and_ltx20_train(tmp_path):
    for version in ("ltx-2.3", "ltx-2.0"):
        d = tiny_denoiser(version)
        data = tiny_data(d, n=2, audio_steps=5)
        cfg = _cfg(steps=3, train_audio=True, targets=("video_attn", "audio_attn", "av_cross_attn"))
        result = LoraTrainer(d, data, cfg, tmp_path / version).run()
        trained = {n for n, a in result.lora.items() if torch.any(a.lora_B)}
        assert any("audio_attn1" in n for n in trained) and any("audio_to_video_attn" in n for n in trained)
    video_only = LoraTrainer(d, tiny_data(d, n=2), _cfg(steps=2, targets=("video_attn", "audio_attn")), tmp_path / "v")
    untouched = {n for n, a in video_only.run().lora.items() if not torch.any(a.lora_B)}
    assert untouched and all("audio_attn" in n for n in untouched)


def test_bad_inputs_fail_early_with_a_clear_message(tmp_path):
    d = tiny_denoiser()
    with pytest.raises(ValueError, match="different model"):
        LoraTrainer(d, tiny_data(tiny_denoiser("ltx-2.0")), _cfg(), tmp_path)
    with pytest.raises(ValueError, match="needs audio latents, and no sample has any"):
        LoraTrainer(d, tiny_data(d), _cfg(train_audio=True), tmp_path).run()
