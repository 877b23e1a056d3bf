"""Dataset Loader node: a folder or manifest in, an ``LTX23_DATASET`` handle and its lint report out."""

from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import io

from ..comfy_adapters.captioner import token_counter
from ..comfy_adapters.report import problems_of, report_ui
from ..trainer_core.data import dataset
from ..trainer_core.paths import resolve_under

REPORT_SUBFOLDER = Path("ltx23_trainer") / "reports"


def _source_path(folder: str) -> str:
    """Relative paths are read from ComfyUI's input folder, where users upload their files, and may not leave it."""
    folder = (folder or "").strip()
    return resolve_under(folder, folder_paths.get_input_directory(), "dataset folder") if folder else folder


class DatasetLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LTX23Trainer_DatasetLoader",
            display_name="LTX-2.3 Dataset Loader",
            category="LTX-2.3 Trainer/Data",
            description="Reads a folder of clips and images with .txt captions (or a dataset.json/.jsonl/.csv), "
                        "checks every file and reports each problem with its fix.",
            inputs=[
                io.String.Input("folder", default="", tooltip="Folder of clips/images with a .txt caption of the "
                                "same name each, or the path of a dataset.json, .jsonl or .csv. Relative paths are "
                                "read from ComfyUI's input folder."),
                io.Boolean.Input("recursive", default=False, tooltip="Also load files in subfolders (default off)."),
                io.String.Input("trigger_word", default="", tooltip="Word added to every caption (once; captions "
                                "that already contain it are left as they are). Leave empty for none."),
                io.Combo.Input("trigger_position", options=list(dataset.TRIGGER_POSITIONS), default="start",
                               tooltip="Put the trigger word at the start or the end of each caption."),
                io.Boolean.Input("strict", default=False, tooltip="Stop with an error on any problem, instead of "
                                 "leaving out broken files and carrying on."),
                io.Boolean.Input("allow_outside_root", default=False, advanced=True, tooltip="Accept manifest "
                                 "entries and links that point outside the dataset folder (default off, so a "
                                 "shared manifest cannot read arbitrary files)."),
                io.String.Input("subject_phrase", default="", optional=True, tooltip="The words every caption "
                                "should use for the subject, e.g. 'a woman with short brown hair'. The report flags "
                                "captions without it. Empty: it flags captions whose subject wording differs from "
                                "most others."),
                io.Clip.Input("clip", optional=True, tooltip="Optional: the LTX-2.3 text encoder, to count caption "
                              "tokens exactly for the 1024-token check (without it the count is a high estimate)."),
            ],
            outputs=[
                io.Custom("LTX23_DATASET").Output(display_name="dataset", tooltip="The list of usable files and "
                                                  "captions, for the Frame Trimmer."),
                io.String.Output(display_name="report", tooltip="Every file with its size, frames, fps, audio "
                                 "and problems."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, folder, recursive=False, **kwargs):
        try:
            return dataset.scan_fingerprint(_source_path(folder), recursive)
        except ValueError as exc:
            return f"refused: {exc}"  # execute raises it on the node

    @classmethod
    def execute(cls, folder, recursive, trigger_word, trigger_position, strict, allow_outside_root,
                subject_phrase="", clip=None) -> io.NodeOutput:
        config = dataset.DatasetConfig(
            source=_source_path(folder), recursive=recursive, trigger_word=trigger_word,
            trigger_position=trigger_position, allow_outside_root=allow_outside_root, strict=strict,
            subject_phrase=subject_phrase.strip(),
        )
        try:
            handle = dataset.load_dataset(config, token_counter(clip) if clip is not None else None)
        except dataset.StrictModeError as exc:
            report_path = _write_report(exc.handle)
            raise ValueError(f"{exc} Full report: {report_path}") from None
        report_path = _write_report(handle)
        report = f"{handle.report_text()}\n\nJSON report: {report_path}"
        if not handle.usable_items():
            raise ValueError(f"No usable files in {handle.source}: every item was left out. Fix the problems "
                             f"listed below, then run again.\n\n{report}")
        return io.NodeOutput(handle, report, ui=_report_ui(handle, report))


def _report_ui(handle: dataset.DatasetHandle, report: str) -> dict:
    s = handle.summary()
    return report_ui(
        report, verdict=f"{s['usable']} usable, {s['excluded']} excluded",
        tone="warn" if s["excluded"] or s["warnings"] else "ok",
        counts=[("usable", s["usable"], "ok"), ("excluded", s["excluded"], "error" if s["excluded"] else "info"),
                ("warnings", s["warnings"], "warn" if s["warnings"] else "info"), ("videos", s["videos"], "info"),
                ("images", s["images"], "info")],
        problems=problems_of(handle.blocking_problems()),
        lines=[f"dataset fingerprint {handle.fingerprint[:12]}"])


def _write_report(handle: dataset.DatasetHandle) -> Path:
    name = Path(handle.source).stem or "dataset"
    folder = Path(folder_paths.get_output_directory()) / REPORT_SUBFOLDER
    return dataset.write_report(handle, folder / f"dataset_{name}_{handle.fingerprint[:8]}.json")


NODES = [DatasetLoader]
