"""Validation sweep core (trainer_core.output.sweep) on real tensors: plan and prompt groups, scores and the recommended
strength, the labelled grid and the mp4 writer; no ComfyUI."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from trainer_core.output import sweep as sw
from trainer_core.output import sweep_grid, sweep_scores

LATENT = (1, 128, 2, 3, 4)


def test_strengths_always_include_the_baseline():
    assert sw.parse_strengths("0.5, 1") == [0.0, 0.5, 1.0]
    assert sw.parse_strengths("1.0 0.75;0.5,0,1") == [0.0, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="not a number"):
        sw.parse_strengths("0.5, strong")
    with pytest.raises(ValueError, match="besides 0"):
        sw.parse_strengths("0")


def test_trigger_added_and_stripped_on_word_boundaries():
    assert sw.add_trigger("a woman walking", "sks") == "sks a woman walking"
    assert sw.add_trigger("a SKS woman", "sks") == "a SKS woman"
    assert sw.strip_trigger("sks a woman, sks style.", "sks") == "a woman, style."
    assert sw.strip_trigger("a sksx woman", "sks") == "a sksx woman"


def test_plan_groups_rows_and_texts():
    plan = sw.make_plan("sks", ["a woman walking", "sks, a face"], ["a car"], strengths=[1, 0.5], seeds=range(2))
    assert plan.prompts == {"trigger": ("sks a woman walking", "sks, a face"),
                            "no_trigger": ("a woman walking", "a face"), "off_topic": ("a car",)}
    assert plan.strengths == (0.0, 0.5, 1.0) and plan.seeds == (0, 1)
    assert len(plan.rows) == 10 and plan.num_samples == 30
    assert plan.rows[0].label == "trigger 1 / seed 0" and plan.rows[-1].label == "off-topic 1 / seed 1"
    assert plan.texts() == ["sks a woman walking", "sks, a face", "a woman walking", "a face", "a car"]
    with pytest.raises(ValueError, match="appears in a no-trigger or off-topic"):
        sw.make_plan("sks", ["a woman"], ["sks car"])
    with pytest.raises(ValueError, match="at least one trigger prompt"):
        sw.make_plan("sks", [], ["a car"])


def test_mode_settings_and_sigmas():
    assert sw.mode_settings("dev") == (20, 3.5) and sw.mode_settings("distilled") == (8, 1.0)
    assert sw.mode_settings("dev", steps=3, cfg=4.0) == (3, 4.0)
    torch.testing.assert_close(sw.sweep_sigmas("distilled", 8, 100), torch.tensor(sw.DISTILLED_SIGMAS))
    sigmas = sw.ltx_sigmas(20, 640)
    assert sigmas[0] == 1.0 and sigmas[-1] == 0 and sigmas[-2].item() == pytest.approx(0.1)
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def _latents(plan, effect, seed=0):
    """Final latents per cell: a prompt/seed-specific base plus ``effect(row, strength) -> delta``."""
    gen = torch.Generator().manual_seed(seed)
    base = {i: torch.randn(LATENT, generator=gen) for i in range(len(plan.rows))}
    return {(i, s): base[i] + effect(row, s) for i, row in enumerate(plan.rows) for s in plan.strengths}


def _plan(seeds=3, strengths=(0, 0.5, 0.75, 1.0)):
    return sw.make_plan("sks", ["a woman", "a face"], ["a car", "a tree"], strengths=strengths, seeds=range(seeds))


def _shift(direction_seed=5):
    return torch.randn(LATENT, generator=torch.Generator().manual_seed(direction_seed))


def test_zero_lora_scores_no_effect_and_warns():
    plan = _plan()
    scores = sweep_scores.score_sweep(plan, _latents(plan, lambda row, s: torch.zeros(LATENT)))
    assert [s.trigger_effect for s in scores.strengths] == [0.0, 0.0, 0.0]
    assert scores.recommended is None and "THIS LORA CHANGES NOTHING" in scores.warnings[0]
    assert all(s.seed_consistency is None for s in scores.strengths)
    assert "WARNING: THIS LORA CHANGES NOTHING" in scores.report()


def test_linear_lora_effect_grows_with_strength_and_gets_its_top_strength():
    plan = _plan()
    shift = _shift()
    scores = sweep_scores.score_sweep(plan, _latents(plan, lambda row, s: s * 0.8 * shift * (row.group == "trigger")))
    effects = [s.trigger_effect for s in scores.strengths]
    assert effects[0] < effects[1] < effects[2]
    assert effects[1] / effects[0] == pytest.approx(1.5, rel=1e-6)
    # Random N(0,1) latents: two seeds differ by sqrt(2) in RMS, so a 0.8-RMS shift at strength 1 is ~0.8/sqrt(2).
    assert scores.seed_spread == pytest.approx(np.sqrt(2), rel=0.05)
    assert effects[2] == pytest.approx(0.8 * _shift().pow(2).mean().sqrt().item() / scores.seed_spread, rel=1e-6)
    assert all(s.bleed_no_trigger == 0 and s.bleed_off_topic == 0 for s in scores.strengths)
    assert all(s.seed_consistency == pytest.approx(1.0) for s in scores.strengths), "same push on every seed"
    assert scores.recommended == 1.0 and not scores.warnings


def test_saturating_lora_is_recommended_at_its_knee():
    plan = _plan()
    shift = _shift()
    curve = {0.0: 0.0, 0.5: 0.9, 0.75: 0.97, 1.0: 1.0}
    scores = sweep_scores.score_sweep(plan, _latents(plan, lambda row, s: curve[s] * shift * (row.group == "trigger")))
    assert scores.recommended == 0.5


def test_bleed_limits_the_recommendation_and_seed_dependent_effects_score_low():
    plan = _plan()
    shift = _shift()
    noise = torch.Generator().manual_seed(9)
    per_row = {row: torch.randn(LATENT, generator=noise) for row in plan.rows}

    def effect(row, s):
        # Off-topic prompts change as much as trigger prompts from 0.75 up: bleed.
        scale = {"trigger": 1.0, "no_trigger": 0.2, "off_topic": 0.2 if s <= 0.5 else 1.0}[row.group]
        return s * scale * shift

    scores = sweep_scores.score_sweep(plan, _latents(plan, effect))
    by_s = {s.strength: s for s in scores.strengths}
    assert by_s[0.5].bleed_off_topic == pytest.approx(0.2 * by_s[0.5].trigger_effect, rel=1e-6)
    assert scores.recommended == 0.5
    incoherent = sweep_scores.score_sweep(plan, _latents(plan, lambda row, s: s * per_row[row]))
    assert abs(incoherent.strengths[-1].seed_consistency) < 0.3
    everywhere = sweep_scores.score_sweep(plan, _latents(plan, lambda row, s: s * shift))
    assert any("bleeds into off-topic" in w for w in everywhere.warnings)
    assert any("trigger word makes little difference" in w for w in everywhere.warnings)


def test_one_seed_falls_back_to_latent_magnitude():
    plan = _plan(seeds=1)
    scores = sweep_scores.score_sweep(plan, _latents(plan, lambda row, s: s * _shift()))
    assert "one seed" in scores.unit and scores.strengths[-1].seed_consistency is None
    with pytest.raises(ValueError, match="have no latent"):
        sweep_scores.score_sweep(plan, {})


def test_grid_places_cells_and_draws_labels():
    rows, cols, t, h, w = 3, 2, 5, 40, 48
    cells = {(r, c): torch.full((t, h, w, 3), (r * cols + c + 1) / 10) for r in range(rows) for c in range(cols)}
    cells[(0, 0)] = cells[(0, 0)][:3]  # a shorter clip holds its last frame
    grid = sweep_grid.assemble_grid(cells, [(f"row {r}", "a long prompt " * 5) for r in range(rows)],
                            [f"{c}" for c in range(cols)], corner="strength")
    assert grid.dtype == torch.uint8 and grid.shape[0] == t
    assert grid.shape[1] % 2 == 0 and grid.shape[2] % 2 == 0
    label_w = grid.shape[2] - cols * w
    header = grid.shape[1] - rows * h
    assert label_w >= 160 and header > 0
    for (r, c), clip in cells.items():
        block = grid[:, header + r * h: header + (r + 1) * h, label_w + c * w: label_w + (c + 1) * w]
        assert bool((block == round((r * cols + c + 1) / 10 * 255)).all())
    # Text is drawn: the label column and header hold light pixels on the dark background.
    assert grid[0, header:header + h, :label_w].max() > 200
    assert grid[0, :header, label_w:].max() > 200 and grid[0, :header, :label_w].max() > 200


def test_grid_shrinks_cells_to_stay_playable_and_cuts_long_labels():
    cells = {(r, 0): torch.rand(2, 320, 512, 3) for r in range(18)}
    grid = sweep_grid.assemble_grid(cells, [("r", "p")] * 18, ["s"], max_side=2048)
    assert max(grid.shape[1:3]) <= 2048
    narrow = sweep_grid.assemble_grid({(0, 0): torch.rand(1, 16, 16, 3)}, [("x" * 80, "y" * 300)], ["strength " * 10])
    assert narrow.shape[1:3] == (16 + 18, 160 + 16)


def test_write_mp4_round_trips(tmp_path):
    frames = torch.zeros(9, 33, 47, 3)
    frames[:, :, :20] = 1.0
    path = sweep_grid.write_mp4(tmp_path / "clip.mp4", frames, fps=24.0)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (48, 34)
        assert float(stream.average_rate) == pytest.approx(24.0)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 9
    assert decoded[0][:, :16].mean() > 230 and decoded[0][:, 24:47].mean() < 25
    assert not list(tmp_path.glob(".*")), "no temp file left behind"


def _toward_concept(plan, amount, seed=3):
    """Latents that move each row ``amount(row, s)`` of the way from its strength-0 latent to a concept clip; the
    reference is that clip's statistics."""
    gen = torch.Generator().manual_seed(seed)
    concept = torch.randn(LATENT, generator=gen) * 0.5 + 1.0
    reference = sweep_scores.ConceptReference(sweep_scores.latent_features(concept), 1, "1 test clip")
    base = {i: torch.randn(LATENT, generator=gen) for i in range(len(plan.rows))}
    latents = {(i, s): base[i] + amount(row, s) * (concept - base[i])
               for i, row in enumerate(plan.rows) for s in plan.strengths}
    return latents, reference


def test_efficacy_is_movement_toward_the_training_data_and_limits_bleed():
    plan = _plan(strengths=(0, 0.5, 1.0))
    amounts = {"trigger": 1.0, "no_trigger": 0.2, "off_topic": 0.1}
    latents, reference = _toward_concept(plan, lambda row, s: s * amounts[row.group])
    scores = sweep_scores.score_sweep(plan, latents, reference)
    full = scores.strengths[-1]
    assert full.efficacy == pytest.approx(1.0, abs=1e-9), "reached the training statistics"
    assert 0.3 < scores.strengths[0].efficacy < 0.7
    assert 0 < full.efficacy_no_trigger < 0.4 and 0 < full.bleed_toward_concept < 0.2
    assert scores.recommended == 1.0 and scores.reference == "1 test clip" and "Efficacy:" in scores.report()

    # Off-topic prompts pulled half the way at full strength: over the bleed limit, so 0.5 is recommended.
    off = {0.0: 0.0, 0.5: 0.05, 1.0: 0.5}
    bleeding, _ = _toward_concept(plan, lambda row, s: s if row.group == "trigger" else off[s])
    assert sweep_scores.score_sweep(plan, bleeding, reference).recommended == 0.5


def test_efficacy_of_zero_and_noise_loras_is_about_zero():
    plan = _plan(strengths=(0, 1.0))
    latents, reference = _toward_concept(plan, lambda row, s: 0.0)
    zero = sweep_scores.score_sweep(plan, latents, reference)
    assert zero.strengths[0].efficacy == 0 and zero.recommended is None
    assert "DOES NOT MOVE" in zero.warnings[0] and "changes nothing" in zero.warnings[0]

    gen = torch.Generator().manual_seed(11)
    noisy = {k: v + (0.5 * torch.randn(LATENT, generator=gen) if k[1] else 0) for k, v in latents.items()}
    noise = sweep_scores.score_sweep(plan, noisy, reference)
    assert noise.strengths[0].trigger_effect > 0.2, "the noise moves the outputs a lot"
    assert abs(noise.strengths[0].efficacy) < 0.1 and noise.recommended is None
    assert "not toward its training data" in noise.warnings[0]


def test_concept_reference_uses_the_trigger_clips_of_the_cache():
    class Data:
        captions = ["sks a cat", "a dog", "a SKS cat"]

        def __len__(self):
            return 3

        def caption(self, i):
            return self.captions[i]

        def item(self, i):
            return type("Item", (), {"video_latents": torch.full((128, 1, 2, 2), float(i))})()

    ref = sweep_scores.concept_reference(Data(), "sks")
    assert ref.clips == 2 and "trigger 'sks'" in ref.source
    assert ref.features[:128].tolist() == [1.0] * 128 and ref.features[128:].abs().max() == 0
    assert sweep_scores.concept_reference(Data(), "xyz").clips == 3
