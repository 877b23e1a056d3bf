"""The audio-video strategy against ltx-trainer's rules, in float64 on a tiny LTX-2.3 model.

``_ltx_trainer_loss`` is written from ltx-trainer's ``flexible`` strategy (``_initialize_noisy_target``,
``_apply_intrinsic_condition`` with a first-frame condition, ``_compute_modality_loss``, ``compute_loss``) and its
patchifiers, in its own token layout ``[B, seq, C]``: nothing of the pack's strategy is reused. Both sides get the
same random draws (sigmas, noise, first-frame choice) and the same model.
"""

from __future__ import annotations

import torch

from tiny import tiny_data, tiny_denoiser
from trainer_core.training import objective
from trainer_core.training.config import recipe_config
from trainer_core.training.denoiser import DenoiserInput
from trainer_core.training.lora import LoraSet, select_targets
from trainer_core.training.strategies import StepContext, for_run
from trainer_core.training.strategies.audio_video import AudioVideo, Draws


def _patchify_video(x):  # SymmetricPatchifier(1): b c f h w -> b (f h w) c
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(b, f * h * w, c)


def _unpatchify_video(t, f, h, w):
    b, _, c = t.shape
    return t.reshape(b, f, h, w, c).permute(0, 4, 1, 2, 3)


def _patchify_audio(x):  # AudioPatchifier: b c t f -> b t (c f)
    b, c, t, f = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, t, c * f)


def _unpatchify_audio(t, c=8, f=16):
    b, n, _ = t.shape
    return t.reshape(b, n, c, f).permute(0, 2, 1, 3)


def _noisy_target(latents, sigma, noise):
    b, seq, _ = latents.shape
    s = sigma.view(-1, 1, 1).to(latents.dtype)
    noisy = (1 - s) * latents + s * noise
    return noisy, noise - latents, sigma.view(-1, 1).expand(b, seq).clone().to(latents.dtype), \
        torch.ones(b, seq, dtype=torch.bool)


def _modality_loss(pred, targets, loss_mask):
    m = loss_mask.unsqueeze(-1).to(pred.dtype)
    return ((pred - targets) ** 2 * m).mean(dim=[-2, -1]) / m.mean(dim=[-2, -1]).clamp(min=1e-8)


def _ltx_trainer_loss(denoiser, items, d: Draws, empty):
    video = torch.stack([it.video_latents for it in items])
    b, _, f, h, w = video.shape
    v_tok = _patchify_video(video)
    noisy, v_targets, v_t, v_mask = _noisy_target(v_tok, d.video_sigma, _patchify_video(d.video_noise))
    cond = torch.zeros(b, v_tok.shape[1], dtype=video.dtype)
    cond[:, : h * w] = 1.0
    cond = cond * d.first_frame.view(-1, 1).to(cond.dtype)
    noisy = cond.unsqueeze(-1) * v_tok + (1 - cond.unsqueeze(-1)) * noisy
    v_t, v_mask = (1 - cond) * v_t, v_mask & (cond == 0)

    a_tok = _patchify_audio(torch.stack([it.audio_latents for it in items]))
    a_noisy, a_targets, a_t, a_mask = _noisy_target(a_tok, d.audio_sigma, _patchify_audio(d.audio_noise))

    context = torch.stack([empty if drop else it.context for it, drop in zip(items, d.dropped.tolist())])
    out = denoiser(DenoiserInput(
        video=_unpatchify_video(noisy, f, h, w), video_timesteps=v_t, sigma=d.video_sigma.to(video.dtype),
        context=context, fps=items[0].fps, audio=_unpatchify_audio(a_noisy), audio_timesteps=a_t,
        audio_sigma=d.audio_sigma.to(video.dtype)))
    loss = _modality_loss(_patchify_video(out.video), v_targets, v_mask) \
        + _modality_loss(_patchify_audio(out.audio), a_targets, a_mask)
    return loss.mean()


def _setup(seed=0, first_frame=0.5, batch=3):
    d = tiny_denoiser(dtype=torch.float64)
    data = tiny_data(d, n=batch, latent=(3, 2, 2), audio_steps=7, seed=seed)
    for it in data.items:
        it.video_latents, it.context = it.video_latents.double(), it.context.double()
        it.audio_latents = it.audio_latents.double()
    cfg = recipe_config("audio_video", rank=2, alpha=2, first_frame_conditioning=first_frame, caption_dropout=0.3)
    ctx = StepContext(cfg, torch.Generator().manual_seed(seed), objective.SigmaSampler(), data.empty.double(),
                      torch.device("cpu"))
    lora = LoraSet(select_targets(d.lora_targets(), cfg.targets), rank=2, alpha=2, seed=seed).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for a in lora.adapters:
            a.lora_B.copy_(torch.randn(a.lora_B.shape, generator=gen, dtype=torch.float64) * 0.1)
    return d, data, cfg, ctx, lora


def test_float64_parity_with_ltx_trainers_flexible_strategy():
    for seed in range(4):
        d, data, cfg, ctx, lora = _setup(seed)
        strategy = for_run(cfg, data)
        assert isinstance(strategy, AudioVideo)
        items = data.items
        draws = strategy.draw(items, ctx)
        assert not torch.equal(draws.video_sigma, draws.audio_sigma)
        with lora.attached(), torch.enable_grad():
            batch = strategy.build(items, draws, ctx)
            ours = strategy.loss(d(batch.inputs), batch)
            ours.backward()
            grads = [p.grad.clone() for p in lora.trainable_parameters()]
            lora.zero_grad()
            ref = _ltx_trainer_loss(d, items, draws, data.empty.double())
            ref.backward()
            ref_grads = [p.grad.clone() for p in lora.trainable_parameters()]
        assert ours.dtype == torch.float64
        assert abs(ours.item() - ref.item()) <= 1e-6 * abs(ref.item()), (seed, ours.item(), ref.item())
        g, r = torch.cat([x.flatten() for x in grads]), torch.cat([x.flatten() for x in ref_grads])
        assert ((g - r).norm() / r.norm()).item() <= 1e-6


def test_per_sample_normalisation_is_what_makes_the_parity():
    """With first-frame conditioning on some samples only, a batch-wide mask mean scores a different loss."""
    d, data, cfg, ctx, lora = _setup(seed=2, first_frame=0.5)
    strategy = AudioVideo()
    draws = strategy.draw(data.items, ctx)
    draws.first_frame = torch.tensor([True, False, False])
    with torch.no_grad():
        batch = strategy.build(data.items, draws, ctx)
        out = d(batch.inputs)
        ours = strategy.loss(out, batch)
        batch_wide = objective.masked_mse(out.video, batch.video_target, batch.video_loss_mask) + \
            objective.masked_mse(out.audio, batch.audio_target, batch.audio_loss_mask)
        ref = _ltx_trainer_loss(d, data.items, draws, data.empty.double())
    assert abs(ours.item() - ref.item()) <= 1e-6 * abs(ref.item())
    assert abs(batch_wide.item() - ref.item()) > 1e-4 * abs(ref.item())


def test_audio_sigma_follows_the_audio_token_count():
    """ltx-trainer draws each modality's sigma at its own sequence length: 2 s of audio (51 tokens) trains at
    lower noise than 960x544x49 video (3570 tokens). Medians from the sampler's closed form: sigmoid(mu) stretched
    between the 0.5th and 99.9th percentiles, mu = 0.95 + 1.1 (L - 1024) / 3072."""
    import math

    def median(tokens):
        mu = 0.95 + 1.1 * (tokens - 1024) / 3072
        sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
        lo, hi = sig(mu - 2.5758293035489004), sig(mu + 3.090232306167813)
        return (sig(mu) - lo) / (hi - lo)

    cfg = recipe_config("audio_video", caption_dropout=0.0)
    ctx = StepContext(cfg, torch.Generator().manual_seed(0), objective.SigmaSampler(uniform_prob=0.0),
                      torch.zeros(4, 24), torch.device("cpu"))
    item = type("Item", (), {})()
    item.video_latents, item.audio_latents = torch.zeros(128, 7, 17, 30), torch.zeros(8, 51, 16)
    v, a = [], []
    for _ in range(40):
        draws = AudioVideo().draw([item] * 50, ctx)
        v.append(draws.video_sigma)
        a.append(draws.audio_sigma)
    v, a = torch.cat(v), torch.cat(a)
    assert abs(v.median().item() - median(3570)) < 0.02 and abs(a.median().item() - median(51)) < 0.02
    assert median(51) < median(3570) - 0.15


def _mixed_data():
    d = tiny_denoiser()
    data = tiny_data(d, n=4, latent=(2, 2, 3), audio_steps=5)
    data.items[1].audio_latents = None
    data.items[3].audio_latents = None
    return d, data


def test_silent_clips_train_video_only_in_the_same_run(tmp_path):
    from trainer_core.training.trainer import LoraTrainer

    d, data = _mixed_data()
    cfg = recipe_config("audio_video", steps=4, rank=2, alpha=2, mixed_precision="no", checkpoint_every=4,
                        gradient_checkpointing=False, batch_size=2)
    trainer = LoraTrainer(d, data, cfg, tmp_path)
    assert len(trainer.data) == 4 and trainer.excluded == []
    seen = []
    original = trainer.denoiser.__class__.__call__

    def spy(self, inputs):
        seen.append(inputs.audio is not None)
        return original(self, inputs)

    trainer.denoiser.__class__.__call__ = spy
    try:
        result = trainer.run()
    finally:
        trainer.denoiser.__class__.__call__ = original
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert sorted(set(seen)) == [False, True]  # batches with sound and silent batches without audio tokens


def test_silent_clips_can_be_excluded(tmp_path):
    from trainer_core.training.trainer import LoraTrainer

    d, data = _mixed_data()
    cfg = recipe_config("audio_video", steps=2, rank=2, alpha=2, mixed_precision="no", checkpoint_every=2,
                        gradient_checkpointing=False, silent_clips="exclude")
    trainer = LoraTrainer(d, data, cfg, tmp_path)
    assert trainer.excluded == [1, 3] and len(trainer.data) == 2
    assert {trainer.data.item(i).sample_id for i in range(2)} == {"clip0.mp4", "clip2.mp4"}
    assert trainer.data.fingerprint() != data.fingerprint()
    trainer.run()
