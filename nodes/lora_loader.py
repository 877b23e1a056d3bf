"""LoRA Loader node: ComfyUI's own LoRA patching, refusing LoRAs trained for another base model."""

from __future__ import annotations

from comfy_api.latest import io

from ..comfy_adapters.lora import guard, load_lora_file, lora_file_names
from ..comfy_adapters.sweep_audio import apply_lora_per_modality
from ..trainer_core.output.sweep_audio import strength_pair


class LoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTX23Trainer_LoraLoader",
            display_name="LTX-2.3 LoRA Loader (base-checked)",
            category="LTX-2.3 Trainer/Output",
            description="Applies a LoRA like the stock 'LoraLoaderModelOnly', but first checks which base model it "
                        "was trained for and stops when it is not the connected one (an LTX-2 LoRA on LTX-2.3 "
                        "produces garbage). Works with this pack's, ltx-trainer's and kohya-style files.",
            inputs=[
                io.Model.Input("model", tooltip="The LTX-2.3 (or LTX-2) MODEL to patch; it is not changed itself."),
                io.Combo.Input("lora_name", options=lora_file_names(),
                               tooltip="A LoRA file in ComfyUI's loras folder."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="How strongly the LoRA applies; 0 returns the model unchanged."),
                io.Float.Input("audio_strength", default=-1.0, min=-10.0, max=10.0, step=0.01, advanced=True,
                               tooltip="Strength of the LoRA's audio half (audio attention and feed-forward, "
                                       "audio<->video attention); -1 (default) = same as 'strength'. 0 keeps the "
                                       "base model's sound."),
                io.Boolean.Input("allow_base_mismatch", default=False, advanced=True,
                                 tooltip="Apply even when the LoRA was trained for another base model. Expect "
                                         "broken output; meant for experiments."),
            ],
            outputs=[
                io.Model.Output(),
                io.String.Output(display_name="report", tooltip="What the base check found."),
            ],
        )

    @classmethod
    def execute(cls, model, lora_name, strength=1.0, allow_base_mismatch=False, audio_strength=-1.0) -> io.NodeOutput:
        lora = load_lora_file(lora_name)
        compat = guard(model, lora, lora_name, allow_base_mismatch)
        video_s, audio_s = strength_pair(strength, audio_strength)
        patched = apply_lora_per_modality(model, lora, video_s, audio_s, lora_name, allow_partial=allow_base_mismatch)
        return io.NodeOutput(patched, compat.message)


NODES = [LoraLoader]
