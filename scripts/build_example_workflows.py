"""Builds the UI-format example workflows (example_workflows/*.json) from their API-format twins
(example_workflows/api/*.json), with ComfyUI's own front end, so the files are exactly what it saves.

Usage (in ComfyUI's Python, e.g. after `source <env>/env.sh`):
    COMFYUI_ROOT=/path/to/ComfyUI python scripts/build_example_workflows.py [NAME ...]

Starts a temporary ComfyUI server with this pack, opens it in headless Chromium (see tests/comfy/comfy_browser.py),
loads each API prompt (app.loadApiJson keeps the node ids), places the nodes, adds the explanatory note and the
model download links, and saves app.graph.serialize(). Edit the API file (the source of truth) or LAYOUTS/NOTES
below, then run this; tests/test_example_workflows.py checks the twins agree.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfy"))

from comfy_browser import browser_page  # noqa: E402
from comfy_server import ComfyServer  # noqa: E402

WORKFLOWS = REPO / "example_workflows"

MODELS = {
    "ltx-2.3-22b-dev.safetensors": ("checkpoints",
                                    "https://huggingface.co/Lightricks/LTX-2.3/resolve/main/ltx-2.3-22b-dev.safetensors"),
    "gemma_3_12B_it_fp4_mixed.safetensors": (
        "text_encoders",
        "https://huggingface.co/Comfy-Org/ltx-2/resolve/main/split_files/text_encoders/gemma_3_12B_it_fp4_mixed.safetensors"),
}

# node id -> [x, y]; the note goes at NOTE_POS.
_COMMON = {"4": [0, 0], "5": [420, 0], "1": [0, 460], "2": [0, 640], "3": [0, 860], "6": [840, 0],
           "7": [1300, 0], "8": [1780, 0]}
LAYOUTS = {"character_lora_from_clips": _COMMON, "style_lora_from_images": _COMMON,
           "ic_lora_from_pairs": {**_COMMON, "9": [1300, 700], "11": [1300, 860], "12": [1300, 1000],
                                  "13": [1300, 1160], "10": [1780, 460]},
           "audio_video_lora_from_clips": {**_COMMON, "9": [2260, 0]},
           "lora_strength_sweep": {"1": [0, 0], "2": [0, 200], "4": [420, 0], "3": [900, 0]}}
NOTE_POS = {"lora_strength_sweep": [0, 380]}
"""Where the note goes; [420, 520] unless named here (the sweep node grows tall with its report)."""

# Steps a workflow offers but leaves bypassed (mode 4): not in the API twin, since a bypassed node is not queued.
# "inputs": input -> [source node id, output slot]; "feeds": output slot 0 -> [(target node id, input name)].
CAPTION_STEP = {
    "type": "LTX23Trainer_CaptionDataset", "pos": [420, 1070],
    "inputs": {"dataset": ["4", 0], "clip": ["2", 0]}, "feeds": [["5", "dataset"]],
    "widgets": {"subject_phrase": "", "trigger_word": "", "existing_captions": "fill missing only",
                "max_length": 256, "frames_per_clip": 8, "seed": 0},
}
OPTIONAL_STEPS = {"character_lora_from_clips": [CAPTION_STEP]}

NOTES = {
    "character_lora_from_clips": """## Character LoRA from video clips

1. Put 10-30 short clips of the character (plus a few stills if you like) in `ComfyUI/input/ltx23_character/`,
   each with a `.txt` caption of the same name. The Dataset Loader adds the trigger word **sks** to every caption.
2. Models: `ltx-2.3-22b-dev.safetensors` in `models/checkpoints`, `gemma_3_12B_it_fp4_mixed.safetensors` in
   `models/text_encoders`.
3. Queue. Each node shows its report on the node (counts first, then each problem with its fix). Latent
   Precompute encodes everything once, then the trainer's panel shows the loss, speed, ETA and the pre-flight estimate.
4. Cancel any time: a checkpoint is saved. Press **Set up resume** on the panel and queue again to continue.
5. Save Comfy LoRA writes it to `models/loras/ltx23/`. Prompt with "sks ..." at strength 0.75-1.0.

Recipe defaults: rank 32, alpha 32, learning rate 1e-4, 1500 steps, checkpoints every 250.
To also learn the voice: turn on `audio` in Latent Precompute and `train_audio` in the trainer.

No captions yet? The bypassed **Caption Dataset** node writes them with the same Gemma encoder: set its
`subject_phrase` (e.g. "a woman with short brown hair"), select it and press Ctrl+B to turn it on, queue, and read
its table. Existing captions are kept unless you choose `replace` (old text kept in `.name.txt.bak-N`).""",
    "style_lora_from_images": """## Style LoRA from images

1. Put 20-50 images in the style in `ComfyUI/input/ltx23_style/`, each with a `.txt` caption that describes the
   content (not the style). The Dataset Loader appends **in the zxq style** to every caption.
2. Models: `ltx-2.3-22b-dev.safetensors` in `models/checkpoints`, `gemma_3_12B_it_fp4_mixed.safetensors` in
   `models/text_encoders`.
3. The Frame Trimmer's buckets are all 1-frame (image) sizes; the `style` recipe trains attention and feed-forward.
4. Queue; watch the trainer's panel. Cancel keeps a checkpoint; **Set up resume** continues it.
5. Save Comfy LoRA writes it to `models/loras/ltx23/`. Prompt with "... in the zxq style".

Recipe defaults: rank 32 (64 for very detailed styles), alpha = rank, learning rate 1e-4, 1500 steps.""",
    "ic_lora_from_pairs": """## IC-LoRA from reference -> target pairs

1. Put 30-50 pairs in `ComfyUI/input/ltx23_ic_pairs/`: the target `clip.mp4`, its reference `clip.ref.mp4`
   (same length and aspect ratio) and a caption `clip.txt`. Or use a manifest with a `reference_video` column.
   Only targets? Set Latent Precompute's `reference` to edges / low resolution / grayscale to derive them.
2. Models: `ltx-2.3-22b-dev.safetensors` in `models/checkpoints`, `gemma_3_12B_it_fp4_mixed.safetensors` in
   `models/text_encoders`.
3. Keep one pair out of training as `input/ltx23_ic_heldout.ref.mp4` + `ltx23_ic_heldout.mp4`: the sweep guides
   generation with that reference and scores how much closer to its target each strength gets than the base.
4. Queue. The `ic` recipe trains video attention + feed-forward, lr 2e-4, 2000 steps, first frame given 20% of
   the time; the reference is always given, clean, and never scored.
5. `reference_downscale_factor` 2 makes training on the reference 4x cheaper; the LoRA file records it, and the
   sweep (and Lightricks' IC pipelines) apply the reference at that factor.""",
    "audio_video_lora_from_clips": """## Audio-video LoRA (a voice or a sound) from video clips

1. Put clips of the subject **with their sound** in `ComfyUI/input/ltx23_voice/`, each with a `.txt` caption that
   also describes the sound ("sks says ... in a deep calm voice"). Voices need minutes of material; stills do not help.
2. Models: `ltx-2.3-22b-dev.safetensors` in `models/checkpoints` (its audio VAE is loaded from the same file),
   `gemma_3_12B_it_fp4_mixed.safetensors` in `models/text_encoders`.
3. Latent Precompute encodes each window's own sound (cut to the window's frames) through the audio VAE and lists
   clips without sound; the trainer's `silent_clips` trains those video-only or leaves them out.
4. The `audio_video` recipe is Lightricks' t2v_lora config: video and audio train together, every attention
   (video, audio, both audio<->video directions), rank 32, learning rate 1e-4, 2000 steps.
5. The Validation Sweep generates sound with every cell: the grid video plays once per cell, that cell framed and
   its sound on the track, and scores the audio half on audio latents. `audio_strength` (advanced) holds the audio
   half at one strength while the columns sweep the video half.
6. Save Comfy LoRA writes it to `models/loras/ltx23/` with the recommended strength; `keep_audio` off saves the
   video half only.""",
    "lora_strength_sweep": """## Strength sweep for any LTX-2.3 LoRA

1. Pick the LoRA in the sweep's `lora_name` (the only LoRA box): this pack's, ltx-trainer's
   (`lora_weights_step_*.safetensors`) or a kohya-style file, copied into `models/loras`.
2. **LTX-2 LoRAs produce garbage on LTX-2.3**: the sweep stops on them (turn on `allow_base_mismatch` only to see
   how they fail). The Inspector, fed by the sweep, shows the base model and the file's run card.
3. Put your trigger word in `trigger`, 2-3 prompts that should show the LoRA in `trigger_prompts`, and 2-3
   unrelated scenes in `off_topic_prompts`. The sweep also runs the trigger prompts without the trigger.
4. `preset`: **quick** (default, 18 small cells: first prompts, 2 seeds, strengths 0/0.5/1 at 320x192x17) for a
   first check; **thorough** (every prompt, 3 seeds, 0-1.25 at 512x320x25, one clip per cell); **custom** uses
   `seeds`, `strengths` and the size widgets.
5. Queue. The node shows the verdict, the recommended strength and the score table next to the grid video
   (`output/ltx23_sweep/`). The recommendation is written into this pack's LoRA files, so the Inspector shows it.
6. `mode`: **dev** (CFG 3.5, 20 steps) for the dev checkpoint; **distilled** (CFG 1, 8 steps) with the distilled
   model or the distilled LoRA applied to the MODEL first.""",
}

BUILD = """async ([prompt, layout, notePos, models, name, optional]) => {
  await app.loadApiJson(prompt, name);
  for (const step of optional) {
    const node = LiteGraph.createNode(step.type);
    node.pos = step.pos;
    app.graph.add(node);
    for (const [widget, value] of Object.entries(step.widgets)) {
      node.widgets.find((w) => w.name === widget).value = value;
    }
    for (const [input, [source, slot]] of Object.entries(step.inputs)) {
      app.graph.getNodeById(Number(source)).connect(slot, node, node.findInputSlot(input));
    }
    for (const [target, input] of step.feeds) {
      const targetNode = app.graph.getNodeById(Number(target));
      node.connect(0, targetNode, targetNode.findInputSlot(input));
    }
    node.mode = 4;
  }
  for (const [id, pos] of Object.entries(layout)) {
    const node = app.graph.getNodeById(Number(id));
    if (node) node.pos = pos;
  }
  for (const node of app.graph.nodes) {
    const files = (node.widgets ?? []).map((w) => w.value).filter((v) => typeof v === "string" && models[v]);
    if (files.length) {
      node.properties.models = files.map((f) => ({ name: f, url: models[f][1], directory: models[f][0] }));
    }
  }
  const md = LiteGraph.createNode("MarkdownNote");
  md.pos = notePos;
  md.size = [400, 520];
  app.graph.add(md);
  app.canvas.ds.offset = [140, 120];
  app.canvas.ds.scale = 0.7;
  app.graph.setDirtyCanvas(true, true);
  return JSON.stringify(app.graph.serialize());
}"""


def main(names: list[str]) -> None:
    root = os.environ.get("COMFYUI_ROOT")
    if not root:
        sys.exit("set COMFYUI_ROOT to a ComfyUI checkout")
    names = names or sorted(LAYOUTS)
    with tempfile.TemporaryDirectory(prefix="ltx23_wf_") as base, ComfyServer(Path(root), Path(base)) as server:
        with browser_page(server) as (page, errors):
            for name in names:
                prompt = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
                ui = json.loads(page.evaluate(BUILD, [prompt, LAYOUTS[name], NOTE_POS.get(name, [420, 520]), MODELS,
                                                  f"{name}.json", OPTIONAL_STEPS.get(name, [])]))
                # The note's text is set here: in the page, widget values of graphs loaded by loadApiJson share
                # one store (every such graph has the all-zero id), so a second workflow got the first one's text.
                (note,) = [n for n in ui["nodes"] if n["type"] == "MarkdownNote"]
                note["widgets_values"] = [NOTES[name]]
                # loadApiJson leaves the all-zero id; a stable id per workflow keeps rebuilds diff-free.
                ui["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ltx23_trainer/example_workflows/{name}"))
                (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")
                print(f"wrote example_workflows/{name}.json")
            if errors:
                sys.exit("\n".join(errors))


if __name__ == "__main__":
    main(sys.argv[1:])
