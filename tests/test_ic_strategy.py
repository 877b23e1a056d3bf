"""IC-LoRA strategy: parity with ltx-trainer's ``video_to_video`` computation, factors, metadata, refusals."""

import dataclasses

import pytest
import torch

from tiny import tiny_data, tiny_denoiser
from trainer_core.cache.training_data import InMemoryData, TrainItem
from trainer_core.training import objective, strategies
from trainer_core.training.config import recipe_config
from trainer_core.training.lora import LoraSet, select_targets
from trainer_core.training.trainer import LoraTrainer

FPS = 24.0


# -- ltx-trainer's computation, written from its source (training_strategies/video_to_video.py, base_strategy.py,
# flexible.py's temporal rule, ltx-core's patchifier and get_pixel_coords); nothing below uses the pack's strategy.

def _patchify(x):  # [B, C, F, H, W] -> [B, F*H*W, C]
    b, c = x.shape[:2]
    return x.reshape(b, c, -1).transpose(1, 2)


def _ltx_positions(frames, height, width, batch, fps):
    coords = []
    for f in range(frames):
        for h in range(height):
            for w in range(width):
                coords.append([[f, f + 1], [h, h + 1], [w, w + 1]])
    latent = torch.tensor(coords, dtype=torch.float32).permute(1, 0, 2)  # [3, N, 2]
    pixel = latent * torch.tensor([8.0, 32.0, 32.0])[:, None, None]
    pixel[0] = (pixel[0] + 1 - 8).clamp(min=0)
    pixel[0] = pixel[0] / fps
    return pixel.unsqueeze(0).repeat(batch, 1, 1, 1)


def _ltx_trainer_loss(transformer, target, ref, noise, sigma, first_frame, context, spatial, temporal):
    b, _, f, h, w = target.shape
    _, _, fr, hr, wr = ref.shape
    tgt, ref_tokens, eps = _patchify(target), _patchify(ref), _patchify(noise)
    n, nr = tgt.shape[1], ref_tokens.shape[1]
    tgt_cond = torch.zeros(b, n, dtype=torch.bool)
    tgt_cond[first_frame, :h * w] = True
    cond = torch.cat([torch.ones(b, nr, dtype=torch.bool), tgt_cond], dim=1)
    s = sigma.view(-1, 1, 1)
    noisy = torch.where(tgt_cond.unsqueeze(-1), tgt, (1 - s) * tgt + s * eps)
    velocity = eps - tgt
    latent = torch.cat([ref_tokens, noisy], dim=1)
    timesteps = torch.where(cond, torch.zeros(b, nr + n, dtype=sigma.dtype), sigma.view(-1, 1).expand(b, nr + n))
    ref_pos = _ltx_positions(fr, hr, wr, b, FPS / temporal)
    if temporal != 1:
        t_target = 1 / FPS
        ref_pos[:, 0] = torch.clamp(ref_pos[:, 0] - (temporal - 1) * t_target, min=0)
    ref_pos[:, 1] *= spatial
    ref_pos[:, 2] *= spatial
    positions = torch.cat([ref_pos, _ltx_positions(f, h, w, b, FPS)], dim=2)
    dv = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    scale = transformer.config.timestep_scale_multiplier
    pred, _ = transformer(
        hidden_states=latent, audio_hidden_states=latent.new_zeros(b, 1, 128),
        encoder_hidden_states=context[..., :dv], audio_encoder_hidden_states=context[..., dv:],
        timestep=timesteps * scale, audio_timestep=latent.new_zeros(b, 1), sigma=sigma * scale,
        audio_sigma=sigma * scale, num_frames=f, height=h, width=w, fps=FPS, audio_num_frames=1,
        video_coords=positions, isolate_modalities=True, use_cross_timestep=True, return_dict=False)
    pred, loss_mask = pred[:, -n:], ~tgt_cond
    m = loss_mask.unsqueeze(-1).to(pred.dtype)
    per_sample = ((pred - velocity) ** 2 * m).mean(dim=[-2, -1]) / m.mean(dim=[-2, -1]).clamp(min=1e-8)
    return per_sample.mean()


def _pairs(n, target=(3, 4, 4), spatial=1, temporal=1, seed=0, width=24):
    gen = torch.Generator().manual_seed(seed)
    f, h, w = target
    ref_shape = ((f - 1) // temporal + 1, h // spatial, w // spatial)
    items = [TrainItem(sample_id=f"clip{i}.mp4", fps=FPS, video_latents=torch.randn(128, *target, generator=gen),
                       context=torch.randn(6, width, generator=gen),
                       reference_latents=torch.randn(128, *ref_shape, generator=gen)) for i in range(n)]
    return InMemoryData(items, empty=torch.zeros(6, width), name=f"pairs-{seed}")


@pytest.mark.parametrize("spatial,temporal", [(1, 1), (2, 1), (2, 2)])
def test_ic_loss_equals_ltx_trainer_video_to_video_in_float64(spatial, temporal):
    d = tiny_denoiser(dtype=torch.float64)
    data = _pairs(2, spatial=spatial, temporal=temporal, width=sum(d.context_widths()))
    cfg = recipe_config("ic", first_frame_conditioning=0.5, caption_dropout=0.0, mixed_precision="no")
    strategy = strategies.for_run(cfg, data)
    assert strategy.name == "ic" and strategy.factors == (spatial, temporal)
    lora = LoraSet(select_targets(d.lora_targets(), ["video_attn", "video_ff"]), rank=2, alpha=2, seed=0).double()
    with torch.no_grad():
        for a in lora.adapters:
            a.lora_B.normal_(0, 0.1)
    ctx = strategies.StepContext(cfg, torch.Generator().manual_seed(3), objective.SigmaSampler(),
                                 data.empty_context(), torch.device("cpu"))
    items = [data.item(0), data.item(1)]
    for seed in range(4):  # until both a conditioned and an unconditioned sample occur in one batch
        ctx.generator.manual_seed(seed)
        batch = strategy.prepare(items, ctx)
        first_frame = ~batch.video_loss_mask[:, 0]
        if first_frame.any() and not first_frame.all():
            break
    assert first_frame.any() and not first_frame.all()
    inputs = dataclasses.replace(batch.inputs, **{
        k: getattr(batch.inputs, k).double() for k in ("video", "video_timesteps", "sigma", "context", "reference",
                                                       "reference_timesteps")})
    target = torch.stack([it.video_latents for it in items]).double()
    ref = torch.stack([it.reference_latents for it in items]).double()
    noise = batch.video_target.double() + target  # the draw the pack made, handed to the reference computation
    context = torch.stack([it.context for it in items]).double()
    with lora.attached(), torch.no_grad():
        ours = strategy.loss(d(inputs), dataclasses.replace(batch, video_target=noise - target)).item()
        theirs = _ltx_trainer_loss(d.transformer, target, ref, noise, batch.sigma.double(), first_frame, context,
                                   spatial, temporal).item()
    assert abs(ours - theirs) <= 1e-6 * abs(theirs), (ours, theirs)
    # The reference matters: a different reference changes the loss (it is really attended to).
    with lora.attached(), torch.no_grad():
        other = strategy.loss(d(dataclasses.replace(inputs, reference=inputs.reference.flip(0))),
                              dataclasses.replace(batch, video_target=noise - target)).item()
    assert abs(other - ours) > 1e-6 * abs(ours)


def test_ic_training_depends_on_the_references_and_saves_the_factor(tmp_path):
    """The bug this strategy fixes: with, without or with other references, the losses were bit-identical."""
    d = tiny_denoiser()
    width = sum(d.context_widths())
    paired = _pairs(3, spatial=2, width=width)
    shuffled = InMemoryData([dataclasses.replace(it, reference_latents=paired.items[(i + 1) % 3].reference_latents)
                             for i, it in enumerate(paired.items)], paired.empty, name=paired.name)
    cfg = recipe_config("ic", steps=3, rank=2, alpha=2, checkpoint_every=3, mixed_precision="no",
                        gradient_checkpointing=False)
    ic = LoraTrainer(d, paired, cfg, tmp_path / "ic")
    ic_losses = ic.run().losses
    other_losses = LoraTrainer(d, shuffled, cfg, tmp_path / "other").run().losses
    t2v = LoraTrainer(d, paired, dataclasses.replace(cfg, strategy="text_to_video"), tmp_path / "t2v")
    assert ic.strategy.name == "ic" and t2v.strategy.name == "text_to_video"
    t2v_losses = t2v.run().losses
    assert ic_losses != other_losses and ic_losses != t2v_losses
    meta = ic.metadata()
    assert meta["reference_downscale_factor"] == "2" and "reference_temporal_scale_factor" not in meta
    assert meta["strategy"] == "ic"
    assert "reference_downscale_factor" not in t2v.metadata()


def test_ic_refuses_partial_pairs_mixed_factors_and_uneven_sizes():
    d = tiny_denoiser()
    width = sum(d.context_widths())
    data = _pairs(2, width=width)
    partial = InMemoryData([data.items[0], dataclasses.replace(data.items[1], reference_latents=None)], data.empty)
    with pytest.raises(ValueError, match="1 of 2 samples have a reference"):
        strategies.for_run(recipe_config("character"), partial)
    with pytest.raises(ValueError, match="clip1.mp4 has none"):
        strategies.for_run(recipe_config("ic"), partial)
    assert strategies.for_run(recipe_config("character", strategy="text_to_video"), partial).name == "text_to_video"
    mixed = InMemoryData([data.items[0], _pairs(1, spatial=2, width=width).items[0]], data.empty)
    with pytest.raises(ValueError, match="one IC-LoRA is trained at one factor"):
        strategies.for_run(recipe_config("ic"), mixed)
    odd = InMemoryData([dataclasses.replace(data.items[0], reference_latents=torch.zeros(128, 3, 3, 4))], data.empty)
    with pytest.raises(ValueError, match="clip0.mp4.*whole factor"):
        strategies.for_run(recipe_config("ic"), odd)
    assert strategies.for_run(recipe_config("character"), tiny_data(d)).name == "text_to_video"
    assert strategies.for_run(recipe_config("character"), data).name == "ic"


def test_preflight_estimate_counts_the_reference_tokens(tmp_path):
    from trainer_core.training import estimate as est
    from trainer_core.training.estimate_model import largest_workload

    d = tiny_denoiser()
    data = _pairs(2, target=(3, 4, 4), spatial=2, width=sum(d.context_widths()))
    data.item = None  # the scan reads shapes only
    plain, ic = largest_workload(data), largest_workload(data, with_reference=True)
    assert (plain.video_tokens, ic.video_tokens) == (48, 48 + 3 * 2 * 2)
    cfg = recipe_config("ic", mixed_precision="no", gradient_checkpointing=False)
    small, large = (est.estimate(d, cfg, w, device="cpu", throughput=1e9, output_dir=tmp_path) for w in (plain, ic))
    assert large.vram.activations > small.vram.activations


def test_ic_sweep_score_is_the_improvement_over_the_base_and_factor_is_read_as_int():
    from trainer_core.output import sweep_ic

    scores = sweep_ic.score_ic({0.0: [1.0, 3.0], 0.5: [1.0, 1.0], 1.0: [1.5, 1.5]},
                               {0.0: [0.2, 0.2], 0.5: [0.1, 0.1], 1.0: [0.15, 0.15]})
    by = {s.strength: s for s in scores.strengths}
    assert by[0.5].improvement == pytest.approx(0.5) and by[1.0].improvement == pytest.approx(0.25)
    assert scores.recommended == 0.5 and not scores.warnings and "50.0%" in scores.report()
    flat = sweep_ic.score_ic({0.0: [1.0], 1.0: [0.99]}, {0.0: [0.1], 1.0: [0.1]})
    assert flat.recommended is None and "has not learned" in flat.warnings[0]
    assert sweep_ic.reference_factor({"reference_downscale_factor": "2"}) == 2
    assert sweep_ic.reference_factor({}) == 1
    with pytest.raises(ValueError, match="'2.0', not a whole number"):
        sweep_ic.reference_factor({"reference_downscale_factor": "2.0"})


def test_ic_recipe_is_ltx_trainer_s_v2v_ic_lora_scaled_to_a_small_dataset():
    cfg = recipe_config("ic")
    assert cfg.strategy == "ic" and cfg.targets == ("video_attn", "video_ff")
    assert (cfg.learning_rate, cfg.first_frame_conditioning, cfg.steps, cfg.rank) == (2e-4, 0.2, 2000, 32)
