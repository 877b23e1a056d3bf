"""LoRA Inspector node: which base model a LoRA file was trained for, and whether it fits a connected MODEL."""

from __future__ import annotations

from comfy_api.latest import io

from ..trainer_core.output import lora_card
from ..comfy_adapters.lora import check_base, inspect, load_lora_file, log, lora_file_names


class LoraInspector(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTX23Trainer_LoraInspector",
            display_name="LTX-2.3 LoRA Inspector",
            category="LTX-2.3 Trainer/Output",
            description="Reports what a LoRA file says about itself: the base model it was trained for (from this "
                        "pack's metadata, other tools' metadata, or keys only one LTX version has), its run card, "
                        "and, with a MODEL connected, whether it fits that model. LTX-2 LoRAs produce garbage on "
                        "LTX-2.3.",
            inputs=[
                io.Combo.Input("lora_name", options=lora_file_names(),
                               tooltip="A LoRA file in ComfyUI's loras folder."),
                io.Model.Input("model", optional=True,
                               tooltip="The model you mean to use it with; its layers are compared with the LoRA's."),
            ],
            outputs=[
                io.String.Output(display_name="report"),
                io.String.Output(display_name="base_version",
                                 tooltip="ltx-2.3, ltx-2.0, ltx-2.5, ltxv-0.9, or 'unknown'."),
                io.String.Output(display_name="compatibility",
                                 tooltip="Against the connected MODEL: match, mismatch, unknown, or 'no model'."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, lora_name, model=None) -> io.NodeOutput:
        lora = load_lora_file(lora_name)
        base = inspect(lora)
        report = [f"{lora_name} ({lora.source_format} format)", lora_card.describe(base, lora.metadata, lora.weights)]
        status = "no model"
        if model is not None:
            compat = check_base(model, lora, lora_name)
            status = compat.status
            report.insert(0, compat.message)
            if compat.status != "match":
                log.warning(compat.message)
        text = "\n".join(report)
        return io.NodeOutput(text, base.version or "unknown", status, ui={"text": (text,)})


NODES = [LoraInspector]
