"""LoRA Inspector node: which base model a LoRA file was trained for, and whether it fits a connected MODEL."""

from __future__ import annotations

from comfy_api.latest import io

from ..trainer_core.output import lora_card
from ..comfy_adapters.lora import NO_FILE, check_base, inspect, log, lora_file_names, resolve_lora
from ..comfy_adapters.report import report_ui
from .lora_trainer import LORA

_TONES = {"match": "ok", "unknown": "warn", "mismatch": "error"}


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
                io.Combo.Input("lora_name", options=[*lora_file_names(), NO_FILE],
                               tooltip="A LoRA file in ComfyUI's loras folder; 'none' when 'lora' is connected."),
                LORA.Input("lora", optional=True,
                           tooltip="A LoRA from the Validation Sweep (its card then shows the sweep's "
                                   "recommended strength) or the trainer. Wins over 'lora_name'."),
                io.Model.Input("model", optional=True,
                               tooltip="The model you mean to use it with; its layers are compared with the LoRA's."),
            ],
            outputs=[
                io.String.Output(display_name="report", tooltip="Base model, evidence and run card."),
                io.String.Output(display_name="base_version",
                                 tooltip="ltx-2.3, ltx-2.0, ltx-2.5, ltxv-0.9, or 'unknown'."),
                io.String.Output(display_name="compatibility",
                                 tooltip="Against the connected MODEL: match, mismatch, unknown, or 'no model'."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, lora_name, model=None, lora=None) -> io.NodeOutput:
        lora, lora_name = resolve_lora(lora, lora_name)
        base = inspect(lora)
        report = [f"{lora_name} ({lora.source_format} format)", lora_card.describe(base, lora.metadata, lora.weights)]
        status, verdict, tone, problems = "no model", f"trained for {base.label}", "info", []
        if model is not None:
            compat = check_base(model, lora, lora_name)
            status = compat.status
            report.insert(0, compat.message)
            verdict, tone = f"{status.upper()}: {compat.message}", _TONES.get(status, "info")
            if compat.status != "match":
                log.warning(compat.message)
        problems += [("warning", c, "check where the file came from") for c in base.conflicts]
        text = "\n".join(report)
        meta = lora.metadata
        strength = meta.get("recommended_strength")
        counts = [("modules", len(lora.weights), "info"), ("rank", lora.rank, "info")]
        if strength:
            counts.append(("recommended strength", strength, "ok" if strength != "none" else "error"))
        card = [f"{k}: {meta[k][:12] if k == 'dataset_fingerprint' else meta[k]}"
                for k in ("resolution_buckets", "dataset_fingerprint", "learning_rate", "lr_schedule")
                if meta.get(k)]
        return io.NodeOutput(text, base.version or "unknown", status, ui=report_ui(
            text, verdict=verdict, tone=tone, counts=counts, problems=problems, lines=card))


NODES = [LoraInspector]
