"""The full default-recipe run (1500 steps, caption dropout 0.05) on the tiny LTX-2.3 model over a dataset with an
over-long caption and an undecodable clip (tests/bad_data.py); prints what was reported and the run's figures.

    .venv/bin/python bench/bad_data_run.py [--steps 1500] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]
from bad_data import run_bad_dataset  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--out", default=None, help="folder to keep (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = run_bad_dataset(Path(args.out or tmp), steps=args.steps)
    print(run.precompute_summary)
    print("\ntrainer report notes:\n" + "\n".join(f"  {n}" for n in run.trainer_notes))
    first, last = statistics.fmean(run.losses[:50]), statistics.fmean(run.losses[-50:])
    print(f"\n{run.steps_done} steps on {run.samples_trained} samples; loss {first:.4f} -> {last:.4f} (mean of "
          f"first / last 50); checkpoints {', '.join(run.checkpoints)}; {run.seconds:.0f} s in all")
    return 0 if run.steps_done == args.steps else 1


if __name__ == "__main__":
    raise SystemExit(main())
