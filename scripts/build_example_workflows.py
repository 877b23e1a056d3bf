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
           "audio_video_lora_from_clips": {**_COMMON, "9": [2260, 0]},
           "lora_strength_sweep": {"1": [0, 0], "2": [0, 200], "3": [420, 0], "4": [880, 0]}}
NOTE_POS = [420, 520]

NOTES = {
    "character_lora_from_clips": """## Character LoRA from video clips

1. Put 10-30 short clips of the character (plus a few stills if you like) in `ComfyUI/input/ltx23_character/`,
   each with a `.txt` caption of the same name. The Dataset Loader adds the trigger word **sks** to every caption.
2. Models: `ltx-2.3-22b-dev.safetensors` in `models/checkpoints`, `gemma_3_12B_it_fp4_mixed.safetensors` in
   `models/text_encoders`.
3. Queue. Check the Dataset Loader and Frame Trimmer reports first; Latent Precompute encodes everything once, then
   the trainer's panel shows the loss, speed, ETA and the pre-flight estimate.
4. Cancel any time: a checkpoint is saved. Press **Set up resume** on the panel and queue again to continue.
5. Save Comfy LoRA writes it to `models/loras/ltx23/`. Prompt with "sks ..." at strength 0.75-1.0.

Recipe defaults: rank 32, alpha 32, learning rate 1e-4, 1500 steps, checkpoints every 250.
To also learn the voice: turn on `audio` in Latent Precompute and `train_audio` in the trainer.""",
    "style_lora_from_images": """## Style LoRA from images

1. Put 20-50 images in the style in `ComfyUI/input/ltx23_style/`, each with a `.txt` caption that describes the
   content (not the style). The Dataset Loader appends **in the zxq style** to every caption.
2. Models: `ltx-2.3-22b-dev.safetensors` in `models/checkpoints`, `gemma_3_12B_it_fp4_mixed.safetensors` in
   `models/text_encoders`.
3. The Frame Trimmer's buckets are all 1-frame (image) sizes; the `style` recipe trains attention and feed-forward.
4. Queue; watch the trainer's panel. Cancel keeps a checkpoint; **Set up resume** continues it.
5. Save Comfy LoRA writes it to `models/loras/ltx23/`. Prompt with "... in the zxq style".

Recipe defaults: rank 32 (64 for very detailed styles), alpha = rank, learning rate 1e-4, 1500 steps.""",
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

1. Pick the LoRA in both `lora_name` boxes: this pack's, ltx-trainer's (`lora_weights_step_*.safetensors`) or a
   kohya-style file, copied into `models/loras`.
2. The Inspector says which base model the file was trained for. **LTX-2 LoRAs produce garbage on LTX-2.3**: the
   sweep stops on them (turn on `allow_base_mismatch` only to see how they fail).
3. Put your trigger word in `trigger`, 2-3 prompts that should show the LoRA in `trigger_prompts`, and 2-3
   unrelated scenes in `off_topic_prompts`. The sweep also runs the trigger prompts without the trigger.
4. Queue. The grid video (rows prompt x seed, columns strength) and one clip per cell go to
   `output/ltx23_sweep/`; the node shows the grid and the scores: trigger effect, bleed into prompts without the
   trigger and off-topic prompts, seed consistency, and a recommended strength.
5. `mode`: **dev** (CFG 3.5, 20 steps) for the dev checkpoint; **distilled** (CFG 1, 8 steps) with the distilled
   model or the distilled LoRA applied to the MODEL first. 512x320x25 keeps the sweep to a few minutes.""",
}

BUILD = """async ([prompt, layout, notePos, models, name]) => {
  await app.loadApiJson(prompt, name);
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
                ui = json.loads(page.evaluate(BUILD, [prompt, LAYOUTS[name], NOTE_POS, MODELS, f"{name}.json"]))
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
