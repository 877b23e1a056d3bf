"""Frame Trimmer node: an ``LTX23_DATASET`` in, bucketed 8n+1-frame ``LTX23_SAMPLES``, a preview and a report out."""

from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import io, ui

from ..comfy_adapters.report import problems_of, report_ui
from ..trainer_core.data import buckets as bucketing
from ..trainer_core.data import trimmer
from ..trainer_core.problems import is_blocking

REPORT_SUBFOLDER = Path("ltx23_trainer") / "reports"
DEFAULT_BUCKETS = "768x512x49;512x768x49;640x640x49;768x512x1"


class FrameTrimmer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LTX23Trainer_FrameTrimmer",
            display_name="LTX-2.3 Frame Trimmer",
            category="LTX-2.3 Trainer/Data",
            description="Fits every clip and image to a size bucket (width and height multiples of 32, 8n+1 frames) "
                        "and picks the frames to train on.",
            inputs=[
                io.Custom("LTX23_DATASET").Input("dataset", tooltip="From the LTX-2.3 Dataset Loader."),
                io.String.Input("buckets", default=DEFAULT_BUCKETS, tooltip="Sizes to train at, as "
                                "width x height x frames separated by ';'. Width and height must be multiples of "
                                "32, frames 8n+1 (9, 17, 25, 33, 41, 49, ...); 1 frame is for images. Each file "
                                "goes to the bucket closest to its shape. The default (landscape, portrait and "
                                "square 49-frame buckets plus 768x512 images) follows the retraining guide; "
                                "smaller sizes or fewer frames train faster and need less memory."),
                io.Float.Input("target_fps", default=0.0, min=0.0, max=240.0, step=0.001, tooltip="Frame rate to "
                               "resample clips to. 0 keeps each clip's own rate (recommended; the model is told "
                               "the rate)."),
                io.Combo.Input("window", options=list(trimmer.WINDOW_MODES), default="start", tooltip="Which part "
                               "of a long clip to use: its start, its middle, a random part (same every run for the "
                               "same seed), or several non-overlapping parts."),
                io.Int.Input("max_windows", default=4, min=1, max=64, tooltip="With window 'multiple': at most this "
                             "many parts per clip (default 4)."),
                io.Boolean.Input("no_upscale", default=False, tooltip="Never enlarge a small file; it goes to a "
                                 "smaller bucket, or is left out (and reported) if none fits."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False,
                             tooltip="Seed for the 'random' window (default 0). Kept fixed between queues, so the "
                             "cached latents stay valid."),
                io.Int.Input("preview_per_bucket", default=3, min=1, max=16, advanced=True, tooltip="How many "
                             "samples of each bucket to show in the preview (default 3)."),
            ],
            outputs=[
                io.Custom("LTX23_SAMPLES").Output(display_name="samples", tooltip="The trimmed samples, for "
                                                  "Latent Precompute."),
                io.Image.Output(display_name="preview", tooltip="First frame of a few samples per bucket."),
                io.String.Output(display_name="report", tooltip="Bucket, frame rate and windows of every file, "
                                 "and why any file was left out."),
            ],
        )

    @classmethod
    def validate_inputs(cls, buckets=None):
        # Only ``buckets`` is declared: ComfyUI skips its own checks for every input named here.
        if buckets is None:
            return True
        try:
            bucketing.parse_buckets(buckets)
        except bucketing.BucketError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, dataset, buckets, target_fps, window, max_windows, no_upscale, seed,
                preview_per_bucket=3) -> io.NodeOutput:
        config = trimmer.TrimConfig.from_text(
            buckets, target_fps=target_fps or None, window=window, max_windows=max_windows, seed=seed,
            no_upscale=no_upscale,
        )
        handle = trimmer.trim_dataset(dataset, config)
        report_path = trimmer.write_report(handle, Path(folder_paths.get_output_directory()) / REPORT_SUBFOLDER
                                           / f"samples_{handle.fingerprint[:8]}.json")
        report = f"{handle.report_text()}\n\nJSON report: {report_path}"
        if not handle.samples:
            raise ValueError(f"The Frame Trimmer produced no samples: every file was left out. Change the buckets "
                             f"or fix the files as listed below.\n\n{report}")
        preview, failures = trimmer.preview_tiles(handle, per_bucket=preview_per_bucket)
        if failures:
            report += "\n\nPreview could not decode:\n" + "\n".join(f"  - {f}" for f in failures)
        return io.NodeOutput(handle, preview, report,
                             ui=_report_ui(handle, report, failures, ui.PreviewImage(preview, cls=cls).as_dict()))


def _report_ui(handle: trimmer.SamplesHandle, report: str, failures: list[str], preview: dict) -> dict:
    excluded = sum(1 for e in handle.entries if not e.included)
    problems = problems_of((e.item_id, p) for e in handle.entries for p in e.problems if is_blocking(p))
    problems += [{"level": "warning", "text": f"preview: {f}", "fix": ""} for f in failures]
    return report_ui(
        report, verdict=f"{len(handle.samples)} samples from {len(handle.entries) - excluded} files, "
                        f"{excluded} excluded", tone="warn" if excluded else "ok",
        counts=[("samples", len(handle.samples), "ok"), ("excluded", excluded, "error" if excluded else "info"),
                *((f"{b}", n, "info") for b, n in handle.bucket_counts().items())],
        problems=problems, **preview)


NODES = [FrameTrimmer]
