"""Save Comfy LoRA node: writes a trained LoRA into ComfyUI's ``loras`` folder with a run card in its metadata.

The file is staged under a hidden name, written atomically, then given the next free numbered name with a hard
link, so an existing LoRA is never replaced and a crash leaves no half-written file that LoraLoader would list.
"""

from __future__ import annotations

import os
import uuid

import torch
from comfy_api.latest import io

from ..trainer_core.output import lora_card
from ..trainer_core.output.lora_file import save_comfy_lora
from ..comfy_adapters.lora import check_base, checkpoint_name, model_version
from ..comfy_adapters.report import report_ui
from ..trainer_core.training.estimate import format_bytes
from .lora_trainer import LORA

SWEEP = io.Custom("LTX23_SWEEP")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


class SaveComfyLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTX23Trainer_SaveComfyLora",
            display_name="LTX-2.3 Save Comfy LoRA",
            category="LTX-2.3 Trainer/Output",
            description="Saves the LoRA into ComfyUI's loras folder, where the stock LoRA loaders list it at once. "
                        "Never overwrites (numbered names). The file's metadata records the base model, training "
                        "settings, trigger and the recommended strength, for the Inspector and for sharing.",
            inputs=[
                LORA.Input("lora", tooltip="The trained LoRA (from the trainer)."),
                io.String.Input("filename_prefix", default="ltx23/ltx23_lora",
                                tooltip="Name inside the loras folder; a number is appended. Use '/' for subfolders."),
                io.Combo.Input("dtype", options=list(DTYPES), default="bf16",
                               tooltip="bf16: half the size, what ltx-trainer writes. fp32: exact weights."),
                io.Boolean.Input("drop_untrained", default=True,
                                 tooltip="Leave out adapters that never received a gradient (audio and cross-modal "
                                         "branches of a video-only run): about half the file size, same effect."),
                io.Boolean.Input("keep_audio", default=True,
                                 tooltip="Off: leave out every audio-branch adapter (audio attention, audio "
                                         "feed-forward, audio<->video attention), for a video-only LoRA."),
                io.Model.Input("model", optional=True,
                               tooltip="The base MODEL it was trained on: records its version and checkpoint name "
                                       "and checks the LoRA fits it."),
                SWEEP.Input("sweep", optional=True,
                            tooltip="A Validation Sweep result: its recommended strength and scores are recorded."),
            ],
            outputs=[
                io.String.Output(display_name="lora_name", tooltip="The saved file's name in the loras folder."),
                io.String.Output(display_name="summary", tooltip="Where it was saved, what it holds, its base model."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, lora, filename_prefix="ltx23/ltx23_lora", dtype="bf16", drop_untrained=True, keep_audio=True,
                model=None, sweep=None) -> io.NodeOutput:
        import folder_paths

        filtered = lora_card.filter_weights(lora.weights, drop_untrained=drop_untrained, keep_audio=keep_audio)
        version = checkpoint = None
        notes = []
        if model is not None:
            compat = check_base(model, lora, "the LoRA")
            if compat.is_mismatch:
                raise ValueError(compat.message + " Connect the MODEL it was trained on, or disconnect 'model'.")
            version, checkpoint = model_version(model), checkpoint_name(model)
        elif not lora.metadata.get("base_model_version"):
            notes.append("no MODEL connected and the LoRA names no base model: the file will not say which base "
                         "it is for")
        recommended = source = scores = None
        if sweep is not None:
            recommended, scores = sweep.get("recommended"), sweep.get("scores")
            source = f"validation sweep ({sweep.get('mode', '?')} mode, {sweep.get('steps', '?')} steps)"
        meta = lora_card.run_card(lora.metadata, weights=filtered.weights, base_model_version=version,
                                  base_checkpoint=checkpoint, recommended_strength=recommended,
                                  strength_source=source, sweep_scores=scores, saved_dtype=dtype, filtered=filtered)

        folder = folder_paths.get_folder_paths("loras")[0]
        sub, _ = lora_card.split_prefix(filename_prefix)
        staged = os.path.join(folder, sub, f".ltx23-saving-{uuid.uuid4().hex}.partial")
        try:
            info = save_comfy_lora(staged, filtered.weights, meta, dtype=DTYPES[dtype])
            name = lora_card.claim_numbered(staged, folder, filename_prefix)
        finally:
            if os.path.exists(staged):
                os.unlink(staged)
        summary = (f"Saved {name} in {folder}: {filtered.summary()}, {dtype}, {info['bytes'] / 2**20:.1f} MiB. "
                   f"Base: {lora_card.VERSION_NAMES.get(meta.get('base_model_version'), 'unknown')}"
                   + (f", recommended strength {recommended:g}" if recommended is not None else "") + "."
                   + "".join(f" Note: {n}." for n in notes))
        where = os.path.relpath(folder, os.path.dirname(folder_paths.models_dir))
        where = folder if where.startswith("..") else where
        return io.NodeOutput(name, summary, ui=report_ui(
            summary, verdict=f"saved as {name} in {where}", tone="ok",
            counts=[("modules", len(filtered.weights), "info"), ("on disk", format_bytes(info["bytes"]), "info")]
            + ([("recommended strength", f"{recommended:g}", "ok")] if recommended is not None else []),
            problems=[("warning", n, "connect the MODEL the LoRA was trained on") for n in notes],
            lines=[f"LoRA loaders list it as: {name}", f"folder: {folder}"]))


NODES = [SaveComfyLora]
