"""A default-recipe run over a dataset with an over-long caption and an undecodable clip finishes, with both
reported (issue 11). 40 steps with caption dropout raised so the long caption's sample is swapped for the empty
caption many times; bench/bad_data_run.py runs the full 1500 steps at the recipe's dropout."""

from __future__ import annotations

import math

from bad_data import LONG_WORDS, WINDOW, run_bad_dataset


def test_run_over_a_long_caption_and_a_broken_clip_finishes_and_reports_both(tmp_path):
    run = run_bad_dataset(tmp_path, steps=40, caption_dropout=0.5, checkpoint_every=20)
    assert run.loader_excluded == []  # the broken clip's header and keyframes read fine
    assert len(run.failed) == 1 and run.failed[0].startswith("broken.mp4#w0 (")
    assert "FFmpeg" in run.failed[0] and "Fix: re-export" in run.failed[0]
    assert len(run.truncated) == 1 and "long.mp4#w0" in run.truncated[0]
    assert f"is {LONG_WORDS} tokens, longer than the text encoder's window of {WINDOW}" in run.truncated[0]
    assert any(n.startswith("left out by precompute: broken.mp4#w0") for n in run.trainer_notes)
    assert any("long.mp4#w0" in n for n in run.trainer_notes)
    assert run.samples_trained == 4 and run.steps_done == 40 and all(math.isfinite(x) for x in run.losses)
    assert run.checkpoints == ["step_000020.ckpt", "step_000040.ckpt"]
