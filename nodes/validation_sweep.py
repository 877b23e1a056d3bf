"""Validation Sweep node: samples trigger / no-trigger / off-topic prompts x seeds x LoRA strengths through
ComfyUI's own sampler and LoRA patching, scores the LoRA (``trainer_core.output.sweep``), and saves a labelled grid video
plus one clip per cell to the output folder.

Sampling is what a user's LTX-2.3 graph does: ``load_lora_for_models`` per strength, ``sample_custom`` (CFG
guider) with the LTXVScheduler schedule (dev) or the distilled sigmas, conditioning with ``frame_rate`` (as
LTXVConditioning adds), video-only latents, and the VAE's own decode. Conditioning from the latent cache is already
processed by the text connectors; ComfyUI's ``preprocess_text_embeds`` passes it through unchanged because it
arrives without ``unprocessed_ltxav_embeds`` and at the width cross + audio cross.
"""

from __future__ import annotations

import functools
import json
import os

import torch
from comfy_api.latest import io

from ..trainer_core.output import sweep as sw
from ..trainer_core.output import sweep_audio, sweep_grid, sweep_ic, sweep_scores
from ..trainer_core.output.sweep_presets import PRESETS, apply_preset
from ..trainer_core.atomic import write_text_atomic
from ..comfy_adapters import ic_sweep
from ..comfy_adapters.lora import NO_FILE, apply_lora, diffusion_model, guard, log, lora_file_names, resolve_lora
from ..comfy_adapters.sweep_report import record_on_file, sweep_report_ui
from ..comfy_adapters.sweep_audio import SweepSound
from .latent_precompute import LATENT_CACHE
from .lora_trainer import LORA
from .save_comfy_lora import SWEEP

DEFAULT_TRIGGER_PROMPTS = "a woman walking through a city street at dusk, cinematic\na close-up of a face, soft light"
DEFAULT_OFF_TOPIC = "a red sports car driving along a coastal road\na bowl of fruit on a wooden table, still camera"


class _Conditioner:
    """Positive/negative conditioning per prompt text, from a CLIP or from the latent cache's processed contexts."""

    def __init__(self, model, fps: float, clip=None, cache=None):
        self.fps = fps
        self.clip = clip
        self.cache = cache.open() if cache is not None and clip is None else None
        if clip is None and cache is None:
            raise ValueError("connect a text encoder (CLIP) or the latent cache from Latent Precompute: the sweep "
                             "needs conditioning for its prompts")
        dm = diffusion_model(model)
        self.width = (dm.cross_attention_dim + dm.audio_cross_attention_dim if dm.caption_proj_before_connector
                      else 2 * dm.caption_channels)

    def check(self, texts: list[str]) -> None:
        if self.cache is None:
            return
        missing = [t for t in texts if t and t not in self.cache.validation_prompts]
        if missing:
            raise ValueError(f"{len(missing)} sweep prompts are not in the latent cache at {self.cache.root}: add "
                             "these lines to Latent Precompute's validation prompts and re-run it (only new prompts "
                             "are encoded), or connect a CLIP instead:\n" + "\n".join(missing))

    def __call__(self, text: str) -> list:
        import node_helpers

        if self.cache is not None:
            context = self.cache.empty_context() if not text else self.cache.prompt_context(text)
            if context.shape[-1] != self.width:
                raise ValueError(f"the latent cache at {self.cache.root} holds {context.shape[-1]}-wide conditioning "
                                 f"but this model takes {self.width}: it was made with another model; re-run Latent "
                                 "Precompute with this MODEL, or connect a CLIP")
            return [[context[None].float().clone(), {"frame_rate": self.fps}]]
        cond = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(text))
        return node_helpers.conditioning_set_values(cond, {"frame_rate": self.fps})


def _save_dir(prefix: str) -> tuple[str, str, str]:
    """(absolute folder, subfolder relative to output, file stem) for one sweep run; never reuses a run's folder."""
    import folder_paths

    out = folder_paths.get_output_directory()
    full, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, out)
    stem = f"{name}_{counter:05}"
    while os.path.exists(os.path.join(full, stem + "_grid.mp4")):
        counter += 1
        stem = f"{name}_{counter:05}"
    return full, subfolder, stem


class ValidationSweep(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTX23Trainer_ValidationSweep",
            display_name="LTX-2.3 LoRA Validation Sweep",
            category="LTX-2.3 Trainer/Validation",
            description="Samples trigger prompts, the same prompts without the trigger and off-topic prompts, over "
                        "several seeds and LoRA strengths, with ComfyUI's own sampler and LoRA loading. Saves a "
                        "labelled grid video and per-cell clips, scores trigger effect, bleed and seed consistency, "
                        "and recommends a strength. Warns loudly when the LoRA changes nothing.",
            inputs=[
                io.Model.Input("model", tooltip="The LTX-2.3 MODEL (with the distilled LoRA already applied for "
                                                "'distilled' mode on a dev checkpoint)."),
                io.Vae.Input("vae", tooltip="The LTX-2.3 video VAE, to decode the samples for viewing."),
                LORA.Input("lora", optional=True, tooltip="A LoRA from the trainer or the LoRA Inspector (pick the "
                                                         "file there: one selector for both). Wins over 'lora_name'."),
                io.Combo.Input("lora_name", options=[NO_FILE, *lora_file_names()], default=NO_FILE,
                               tooltip="Only when nothing is connected to 'lora': any LoRA file in the loras folder "
                                       "(this pack's, ltx-trainer's, kohya)."),
                io.Combo.Input("preset", options=list(PRESETS), default="quick",
                               tooltip="quick (default): the first trigger prompt, its no-trigger twin and the "
                                       "first off-topic prompt, 2 seeds, strengths 0/0.5/1.0 at 320x192x17, no "
                                       "per-cell clips (18 small cells: a first check). thorough: every prompt "
                                       "line, 3 seeds, strengths 0 to 1.25 in steps of 0.25 at 512x320x25, clips "
                                       "saved. custom: 'seeds', 'strengths', size and 'save_clips' below."),
                io.Clip.Input("clip", optional=True, tooltip="The LTX-2.3 text encoder, to encode the prompts."),
                LATENT_CACHE.Input("cache", optional=True,
                                   tooltip="The latent cache the LoRA was trained on: its training clips are what "
                                           "the efficacy scores measure movement toward. Also, without a CLIP, its "
                                           "validation prompts are the conditioning (every sweep prompt must be "
                                           "among them)."),
                io.String.Input("trigger", default="", tooltip="The trigger word the LoRA was trained with."),
                io.String.Input("trigger_prompts", default=DEFAULT_TRIGGER_PROMPTS, multiline=True,
                                tooltip="One prompt per line that should show what the LoRA learned; the trigger is "
                                        "put in front when a line lacks it."),
                io.String.Input("off_topic_prompts", default=DEFAULT_OFF_TOPIC, multiline=True,
                                tooltip="One unrelated prompt per line, without the trigger: checks for bleed."),
                io.String.Input("no_trigger_prompts", default="", multiline=True, advanced=True,
                                tooltip="Empty: the trigger prompts with the trigger removed. Or your own lines."),
                io.String.Input("negative_prompt", default="", multiline=True, advanced=True,
                                tooltip="Used when CFG > 1. With a latent cache it must be one of its prompts "
                                        "(empty uses the cache's empty text)."),
                io.String.Input("strengths", default="0, 0.5, 0.75, 1.0",
                                tooltip="Preset 'custom' only: LoRA strengths to compare; 0 (the base model) is "
                                        "always added."),
                io.Int.Input("seeds", default=3, min=1, max=16, tooltip="Preset 'custom' only: seeds per prompt "
                                                                        "(2 or more to measure seed spread)."),
                # Not named "seed": the front end would add a randomize-after-run control, and a sweep compares
                # fixed seeds across runs.
                io.Int.Input("first_seed", default=0, min=0, max=2**31 - 1,
                             tooltip="The first seed; the others follow it."),
                io.Combo.Input("mode", options=list(sw.MODES), default="dev",
                               tooltip="dev: CFG 3.5, 20 steps, LTXVScheduler sigmas. distilled: CFG 1, the 8 "
                                       "distilled sigmas (dev checkpoint + distilled LoRA, or the distilled model)."),
                io.Int.Input("steps", default=0, min=0, max=200, tooltip="0 = the mode's default."),
                io.Float.Input("cfg", default=0.0, min=0.0, max=30.0, step=0.1, tooltip="0 = the mode's default."),
                io.Int.Input("width", default=512, min=32, max=4096, step=32,
                             tooltip="Preset 'custom' only: width of every sample in pixels, a multiple of 32 "
                                     "(default 512). Larger is closer to real use but each cell takes longer."),
                io.Int.Input("height", default=320, min=32, max=4096, step=32,
                             tooltip="Preset 'custom' only: height in pixels, a multiple of 32 (default 320)."),
                io.Int.Input("frames", default=25, min=1, max=257, step=8,
                             tooltip="Preset 'custom' only: frames per sample, 8n+1."),
                io.Float.Input("fps", default=24.0, min=1.0, max=120.0, step=0.01,
                               tooltip="Frame rate the model is told (it shapes motion) and of the saved clips."),
                io.Combo.Input("sampler_name", options=_sampler_names(), default="euler", advanced=True,
                               tooltip="ComfyUI sampler for every cell (default euler, what LTX-2.3 graphs use)."),
                io.Boolean.Input("save_clips", default=True, advanced=True,
                                 tooltip="Preset 'custom' only: also save one clip per grid cell (full "
                                         "resolution)."),
                io.String.Input("filename_prefix", default="ltx23_sweep/sweep", advanced=True,
                                tooltip="Where in the output folder the grid, clips and scores go."),
                io.Boolean.Input("allow_base_mismatch", default=False, advanced=True,
                                 tooltip="Sweep even a LoRA trained for another base model (to show how it fails)."),
                io.Image.Input("reference", optional=True,
                               tooltip="IC-LoRA: the reference video (e.g. a held-out pair's reference) that guides "
                                       "every generation, applied at the LoRA's reference_downscale_factor. The grid "
                                       "becomes reference | one column per strength | ground truth."),
                io.Image.Input("ground_truth", optional=True,
                               tooltip="IC-LoRA: what the reference should turn into (the pair's target). The "
                                       "score is how much closer to it each strength gets than the base model."),
                io.Vae.Input("audio_vae", optional=True,
                             tooltip="The LTX-2.3 audio VAE (LTXV Audio VAE Loader): generate sound with every cell, "
                                     "put it on the grid video (which then plays once per cell, that cell framed, "
                                     "its sound on the track) and score the LoRA's audio half too."),
                io.Float.Input("audio_strength", default=-1.0, min=-1.0, max=10.0, step=0.05, advanced=True,
                               tooltip="With sound: -1 (default) gives the audio half of the LoRA each column's "
                                       "strength. 0 or more holds the audio half at that strength while the "
                                       "columns sweep the video half (e.g. 0 = video-only LoRA with the base "
                                       "model's sound)."),
            ],
            outputs=[
                SWEEP.Output(display_name="sweep", tooltip="Scores and recommended strength, for Save Comfy LoRA."),
                io.Float.Output(display_name="recommended_strength",
                                tooltip="0 when the LoRA changes nothing."),
                io.String.Output(display_name="report", tooltip="Scores, verdict and where the grid went."),
                io.Image.Output(display_name="grid_frame",
                                tooltip="The grid's middle frame, as an image (the video is in the output folder)."),
                LORA.Output(display_name="lora", tooltip="The swept LoRA with the result in its run card, for the "
                                                         "LoRA Inspector or Save Comfy LoRA."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, vae, lora_name=NO_FILE, trigger="", trigger_prompts=DEFAULT_TRIGGER_PROMPTS,
                off_topic_prompts=DEFAULT_OFF_TOPIC, no_trigger_prompts="", negative_prompt="",
                strengths="0, 0.5, 0.75, 1.0", seeds=3, first_seed=0, mode="dev", steps=0, cfg=0.0, width=512,
                height=320, frames=25, fps=24.0, sampler_name="euler", save_clips=True,
                filename_prefix="ltx23_sweep/sweep", allow_base_mismatch=False, lora=None, clip=None, cache=None,
                preset="quick", reference=None, ground_truth=None, audio_vae=None,
                audio_strength=-1.0) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.sample
        import comfy.samplers
        import comfy.utils

        choice = apply_preset(preset, sw.parse_lines(trigger_prompts), sw.parse_lines(off_topic_prompts),
                              sw.parse_lines(no_trigger_prompts), sw.parse_strengths(strengths), seeds, save_clips,
                              (width, height, frames))
        save_clips, (width, height, frames) = choice.save_clips, choice.size
        if width % 32 or height % 32 or (frames - 1) % 8:
            raise ValueError(f"{width}x{height}x{frames}: width and height must be multiples of 32 and frames 8n+1 "
                             "(e.g. 512x320x25)")
        lora_file, name = resolve_lora(lora, lora_name)
        compat = guard(model, lora_file, name, allow_base_mismatch)
        plan = sw.make_plan(trigger, choice.trigger_prompts, choice.off_topic_prompts, choice.no_trigger_prompts,
                            choice.strengths, range(first_seed, first_seed + choice.seeds))
        if reference is not None:
            plan = sweep_ic.ic_plan(plan)
        steps, cfg = sw.mode_settings(mode, steps, cfg)
        conditioner = _Conditioner(model, fps, clip=clip, cache=cache)
        conditioner.check(plan.texts() + ([negative_prompt.strip()] if cfg != 1.0 else []))
        positives = {text: conditioner(text) for text in plan.texts()}
        # CFG 1 never evaluates the negative; the empty text is always available (also in a cache).
        negative = conditioner(negative_prompt.strip() if cfg != 1.0 else "")

        latent = torch.zeros(1, 128, (frames - 1) // 8 + 1, height // 32, width // 32)
        sound = SweepSound(model, audio_vae, frames, fps, audio_strength) if audio_vae is not None else None
        sigmas = sw.sweep_sigmas(mode, steps, latent[0, 0].numel())
        sampler = comfy.samplers.sampler_object(sampler_name)
        rows = plan.rows
        pbar = comfy.utils.ProgressBar(2 * plan.num_samples, node_id=cls.hidden.unique_id)
        if reference is not None:
            folder, subfolder, stem = _save_dir(filename_prefix)
            job = ic_sweep.ICSweep(
                model, vae, lora_file, name, functools.partial(apply_lora, allow_partial=allow_base_mismatch), rows,
                positives, negative, list(plan.strengths), cfg, sampler, sigmas, (width, height, frames), fps,
                folder, stem, save_clips, lambda n: pbar.update(2 * n))
            header = f"LoRA: {name}. {compat.message}\n{mode} mode, {steps} steps, CFG {cfg:g}, {width}x{height}x{frames}"
            result, recommended, report, middle, ui = ic_sweep.run_and_save(job, reference, ground_truth, subfolder,
                                                                            header)
            return io.NodeOutput(result, float(recommended or 0.0), report, middle, lora_file, ui=ui)
        latents = {}
        for strength in plan.strengths:
            patched = (sound.patch(model, lora_file, strength, name, allow_base_mismatch) if sound else
                       apply_lora(model, lora_file, strength, name, allow_partial=allow_base_mismatch))
            start = sound.latent(latent) if sound else latent
            for i, row in enumerate(rows):
                mm.throw_exception_if_processing_interrupted()
                noise = comfy.sample.prepare_noise(start, row.seed)
                out = comfy.sample.sample_custom(patched, noise, cfg, sampler, sigmas, positives[row.prompt], negative,
                                                 start, disable_pbar=True, seed=row.seed)
                latents[(i, strength)] = (sound.keep((i, strength), out) if sound else out).float().cpu()
                pbar.update(1)
        # The cache's training clips are what "toward the concept" means; without it only the change is scored.
        concept = sweep_scores.concept_reference(cache.open(), plan.trigger) if cache is not None else None
        scores = sweep_scores.score_sweep(plan, latents, concept)
        audio_scores = sweep_audio.score_audio(plan, sound.latents, audio_strength) if sound else None

        # Decoding after all sampling keeps the VAE and the DiT from taking turns in VRAM.
        folder, subfolder, stem = _save_dir(filename_prefix)
        cell_size = sweep_grid.grid_cell_size(height, width, len(rows), len(plan.strengths))
        cells, waves = {}, {}
        for (i, strength), lat in latents.items():
            mm.throw_exception_if_processing_interrupted()
            clip = sweep_grid.to_uint8(vae.decode(lat)[0])
            cell_key = (i, plan.strengths.index(strength))
            if sound:
                waves[cell_key] = sound.decode((i, strength))
            if save_clips:
                row = rows[i]
                cell = os.path.join(folder, stem + "_clips",
                                    f"{row.group}{row.prompt_index + 1}_seed{row.seed}_s{strength:g}.mp4")
                if sound:
                    sweep_audio.write_clip_with_sound(cell, clip, waves[cell_key], fps, sound.sample_rate)
                else:
                    sweep_grid.write_mp4(cell, clip, fps)
            cells[cell_key] = sweep_grid.fit_clip(clip, cell_size)
            pbar.update(1)
        grid = sweep_grid.assemble_grid(cells, [(r.label, r.prompt) for r in rows],
                                        [sweep_audio.column_label(s, audio_strength if sound else -1)
                                         for s in plan.strengths], corner="LoRA strength:")
        if sound:
            layout = sweep_grid.grid_layout(*cell_size, len(rows), len(plan.strengths))
            sweep_audio.write_grid_with_sound(os.path.join(folder, stem + "_grid.mp4"), grid,
                                              sweep_audio.cell_boxes(layout, len(rows), len(plan.strengths)), waves,
                                              fps, sound.sample_rate)
        else:
            sweep_grid.write_mp4(os.path.join(folder, stem + "_grid.mp4"), grid, fps)

        report = "\n".join([f"LoRA: {name}. {compat.message}",
                            f"{len(rows)} rows x {len(plan.strengths)} strengths ({preset}), {mode} mode, {steps} steps, "
                            f"CFG {cfg:g}, {width}x{height}x{frames} @ {fps:g} fps.", scores.report(),
                            *([sweep_audio.audio_report(audio_scores, audio_strength)] if sound else []),
                            f"Saved to {os.path.join(folder, stem)}_grid.mp4" + (" and _clips/" if save_clips else "")])
        if scores.recommended is None:
            log.warning("LTX-2.3 Validation Sweep: %s", " ".join(scores.warnings))
        result = {"lora": name, "recommended": scores.recommended, "scores": scores.as_dict(), "mode": mode,
                  "steps": steps, "cfg": cfg, "size": [width, height, frames], "fps": fps,
                  "prompts": {g: list(p) for g, p in plan.prompts.items()}, "seeds": list(plan.seeds),
                  "grid": os.path.join(folder, stem + "_grid.mp4")}
        if sound:
            result["audio"] = {"audio_strength": audio_strength, "sample_rate": sound.sample_rate,
                               "scores": audio_scores.as_dict() if audio_scores else None}
        write_text_atomic(os.path.join(folder, stem + "_scores.json"), json.dumps(result, indent=1))
        lora_file, card = record_on_file(lora_file, result)
        report += "\n" + card
        ui = sweep_report_ui(result, report, card, images=[{"filename": stem + "_grid.mp4", "subfolder": subfolder,
                                                            "type": "output"}], animated=(True,))
        middle = grid[grid.shape[0] // 2][None].float() / 255
        return io.NodeOutput(result, float(scores.recommended or 0.0), report, middle, lora_file, ui=ui)


def _sampler_names() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.KSampler.SAMPLERS)


NODES = [ValidationSweep]
