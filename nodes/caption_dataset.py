"""Caption Dataset node: captions clips with the loaded LTX-2.3 text encoder (Gemma 3 and its vision tower)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import comfy.model_management as mm
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..comfy_adapters.captioner import ComfyCaptioner, token_counter
from ..comfy_adapters.report import report_ui
from ..trainer_core.atomic import write_text_atomic
from ..trainer_core.data import captioning, dataset

REPORT_SUBFOLDER = Path("ltx23_trainer") / "reports"


class CaptionDataset(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LTX23Trainer_CaptionDataset",
            display_name="LTX-2.3 Caption Dataset",
            category="LTX-2.3 Trainer/Data",
            description="Writes a caption for every clip and image with the LTX-2.3 text encoder you already load "
                        "(Gemma 3 sees sampled frames): subject, action, scene, camera, sound. Captions go to .txt "
                        "files next to the clips (or the manifest's caption column); old captions are only "
                        "replaced on request and then kept in a backup. Cancel and queue again to resume.",
            search_aliases=["caption", "auto caption", "gemma", "dataset"],
            inputs=[
                io.Custom("LTX23_DATASET").Input("dataset", tooltip="From the LTX-2.3 Dataset Loader."),
                io.Clip.Input("clip", tooltip="The LTX-2.3 text encoder (Gemma 3 12B, from LTXV Audio Text Encoder "
                              "Loader): the same one Latent Precompute uses, so it is loaded once for both."),
                io.String.Input("subject_phrase", default="", tooltip="How every caption names the subject, word "
                                "for word, e.g. 'a woman with short brown hair'. One fixed phrase is what ties the "
                                "LoRA to the subject; it is added to any caption that misses it. Empty: the "
                                "encoder names the subject itself."),
                io.String.Input("trigger_word", default="", tooltip="Written into each new caption once, at the "
                                "Dataset Loader's trigger position. Empty: none is written, and the Dataset Loader "
                                "still adds its own trigger word when it reads the captions."),
                io.Combo.Input("existing_captions", options=list(captioning.MODES), default=captioning.MODES[0],
                               tooltip="fill missing only: caption clips that have no caption (or an empty one) "
                               "and leave the rest. keep: caption every clip for the preview below but write "
                               "nothing. replace: caption every clip; each old caption is kept in a hidden "
                               ".<name>.txt.bak-N file beside it (manifests: one .<manifest>.bak-N copy)."),
                io.Int.Input("max_length", default=256, min=16, max=1024, tooltip="Most tokens per caption "
                             "(about 0.75 words each). A caption cut at this length ends at its last full "
                             "sentence."),
                io.Int.Input("frames_per_clip", default=8, min=1, max=49, tooltip="Frames shown to the encoder per "
                             "clip, spread from the first to the last frame (256 tokens each; more frames see more "
                             "action but take longer). Images use one."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False,
                             tooltip="Sampling seed. Clips captioned by an earlier run with the same settings are "
                             "skipped; change the seed to caption them again."),
            ],
            outputs=[
                io.Custom("LTX23_DATASET").Output(display_name="dataset", tooltip="The dataset re-read with the new "
                                                  "captions (and their lint), for the Frame Trimmer."),
                io.String.Output(display_name="report", tooltip="Every item with its caption and what was done."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, dataset, clip, subject_phrase, trigger_word, existing_captions, max_length, frames_per_clip,
                seed) -> io.NodeOutput:
        handle = dataset
        config = handle.config
        settings = captioning.CaptionSettings(
            subject=subject_phrase.strip(), trigger=trigger_word.strip(),
            trigger_position=config.trigger_position, mode=existing_captions, max_tokens=max_length,
            frames_per_clip=frames_per_clip, seed=seed)
        captioner = ComfyCaptioner(clip)
        pbar = comfy.utils.ProgressBar(max(1, len(handle.usable_items())), node_id=cls.hidden.unique_id)
        report = captioning.caption_dataset(
            handle, settings, captioner, on_progress=lambda done, total: pbar.update_absolute(done, total),
            check_cancel=mm.throw_exception_if_processing_interrupted)
        text = report.text()
        if report.written:
            subject = settings.subject or config.subject_phrase
            handle = _reload(dataclasses.replace(config, subject_phrase=subject), token_counter(clip), text)
        report_path = Path(folder_paths.get_output_directory()) / REPORT_SUBFOLDER / \
            f"captions_{Path(handle.source).stem or 'dataset'}_{handle.fingerprint[:8]}.json"
        write_text_atomic(report_path, json.dumps([dataclasses.asdict(r) for r in report.rows], indent=1,
                                                  ensure_ascii=False))
        text += f"\n\nJSON report: {report_path}"
        return io.NodeOutput(handle, text, ui=report_ui(text, verdict=text.splitlines()[0] if text else None))


def _reload(config: dataset.DatasetConfig, count_tokens, captions_report: str) -> dataset.DatasetHandle:
    try:
        return dataset.load_dataset(config, count_tokens)
    except dataset.StrictModeError as exc:
        raise ValueError(f"The captions are written, but the dataset now fails strict mode: {exc}\n\n"
                         f"{captions_report}") from None


NODES = [CaptionDataset]
