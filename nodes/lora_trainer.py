"""LoRA Trainer node: trains an LTX-2.3 LoRA through the MODEL ComfyUI already loaded.

The loaded model is never changed: training runs on a clone, the LoRA lives in forward hooks that are removed
afterwards, and the weights ComfyUI loaded under inference mode are used through zero-copy aliases
(``comfy_denoiser.trainable_view``). Cancel from ComfyUI saves a resumable checkpoint first; queue the node again
with "resume" on to continue exactly where it stopped.
"""

from __future__ import annotations

import os
import re

import torch
from comfy_api.latest import io


from ..trainer_core.training.checkpoints import latest_checkpoint
from ..trainer_core.training.config import RECIPES, TrainConfig, recipe_config
from ..trainer_core.cache.integrity import verify_cache
from ..trainer_core.output.lora_file import LoraFile, comfy_state_dict
from ..comfy_adapters.job_export import export_job
from ..comfy_adapters.report import report_ui
from ..comfy_adapters.progress import workflow_id
from ..comfy_adapters.cross_timestep import cross_timestep_note
from ..trainer_core.training.strategies.audio_video import SILENT_CLIP_CHOICES, silent_clips_note
from ..comfy_adapters.training import train_on_loaded_model

RUN_ON = ("this ComfyUI", "export job")
LATENT_CACHE = io.Custom("LTX23_LATENT_CACHE")
LORA = io.Custom("LTX23_LORA")
RUNS_FOLDER = os.path.join("ltx23_trainer", "runs")
_DEFAULTS = TrainConfig()


def run_folder(run_name: str, resume: bool) -> str:
    """``output/ltx23_trainer/runs/<name>``. A new run never reuses a folder that holds checkpoints: it takes the
    next free ``<name>_N``, so earlier runs are never overwritten."""
    import folder_paths

    name = re.sub(r"[^\w.-]+", "_", run_name.strip()) or "ltx23_lora"
    base = os.path.join(folder_paths.get_output_directory(), RUNS_FOLDER)
    path = os.path.join(base, name)
    if resume:
        if latest_checkpoint(os.path.join(path, "checkpoints")) is None:
            raise ValueError(f"nothing to resume: {path} has no checkpoints. Turn 'resume' off to start the run, "
                             f"or set run_name to the run you want to continue.")
        return path
    n = 1
    while latest_checkpoint(os.path.join(path, "checkpoints")) is not None:
        n += 1
        path = os.path.join(base, f"{name}_{n}")
    return path


def _targets(text: str, recipe: str) -> tuple[str, ...]:
    parts = tuple(t.strip() for t in re.split(r"[,\s]+", text) if t.strip())
    return parts or RECIPES[recipe].get("targets", _DEFAULTS.targets)


class LoraTrainerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTX23Trainer_LoraTrainer",
            display_name="LTX-2.3 LoRA Trainer",
            category="LTX-2.3 Trainer/Train",
            description="Trains a LoRA on the precomputed latents, through the LTX-2.3 model ComfyUI loaded (the "
                        "model itself is not changed). The panel on the node shows the loss, speed, ETA and a "
                        "pre-flight estimate while it runs. Cancelling saves a checkpoint first: press 'Set up "
                        "resume' (or turn 'resume' on) and queue again to continue exactly where it stopped. "
                        "Defaults are the LTX-2.3 retraining guide's recipe: rank 32, alpha 32, learning rate 1e-4, "
                        "1500 steps, batch 1, checkpoints every 250 steps.",
            inputs=[
                io.Model.Input("model", tooltip="The LTX-2.3 model to train on: the same one you generate with (LTX-2.3 dev, from Load "
                                          "Checkpoint). A LoRA trained on LTX-2 does not work on LTX-2.3."),
                io.Custom("LTX23_LATENT_CACHE").Input("latent_cache", tooltip="The encoded clips and captions, from LTX-2.3 Latent Precompute."),
                io.Combo.Input("recipe", options=list(RECIPES), default="character",
                               tooltip="What the LoRA should learn; picks which layers train. character (default): a person, "
                                       "creature or object; attention layers only, so the rest of the scene stays "
                                       "as the model draws it. style: a look (colour, texture, medium); attention "
                                       "+ feed-forward. motion: how things move; attention + feed-forward, and half "
                                       "the steps are given the first frame, as image-to-video uses the model. "
                                       "ic: an IC-LoRA from reference -> target pairs (set steps 2000 and learning "
                                       "rate 0.0002 for 30-50 pairs). A cache with references trains IC whatever "
                                       "the recipe. "
                                       "audio_video: a voice or sound tied to a subject; video and audio train "
                                       "together (every attention, both audio<->video directions), as "
                                       "Lightricks' t2v_lora config. Needs 'audio' on in Latent Precompute."),
                io.String.Input("run_name", default="ltx23_lora",
                                tooltip="Name of this training run: its checkpoints go to output/ltx23_trainer/runs/<run_name>. "
                                        "A new run never overwrites an old one; it becomes <run_name>_2, _3, ..."),
                io.Int.Input("steps", default=_DEFAULTS.steps, min=1, max=100000,
                             tooltip="How many training steps (recipe default 1500). 1000-2000 is typical; compare the "
                                     "checkpoints at 500, 750 and 1000 steps before training longer."),
                io.Int.Input("rank", default=_DEFAULTS.rank, min=1, max=256,
                             tooltip="LoRA size, i.e. how much it can learn (recipe default 32). 32 suits most LoRAs; 64 "
                                     "for complex styles; 16 if it copies the training clips too closely."),
                io.Float.Input("alpha", default=_DEFAULTS.alpha, min=0.1, max=1024.0, step=0.1,
                               tooltip="Strength scale: the LoRA's change is multiplied by alpha/rank (recipe default 32, "
                                       "equal to rank, i.e. 1.0). Change it together with rank."),
                io.Float.Input("learning_rate", default=_DEFAULTS.learning_rate, min=1e-7, max=1e-2, step=1e-6,
                               tooltip="How big each training step is (recipe default 0.0001). Lower it to 0.00005 if the "
                                       "loss jumps around or the output breaks; raising it rarely helps."),
                io.String.Input("trigger_word", default="",
                                tooltip="The trigger word your captions use (set it in the Dataset Loader). Only recorded in "
                                        "the LoRA's metadata here, so prompts later know what to write."),
                io.Boolean.Input("resume", default=False,
                                 tooltip="Continue the run named in run_name from its newest readable checkpoint "
                                         "(or the one in resume_from), with the same data and settings; only steps, "
                                         "the learning rate (e.g. lowered after a NaN loss) and the checkpoint "
                                         "settings may change. Off (default) starts a new run."),
                io.Int.Input("seed", default=_DEFAULTS.seed, min=0, max=2**31 - 1, control_after_generate=False,
                             tooltip="Random seed (default 42). Same seed + same data + same settings = the "
                                     "same LoRA. Not randomized after each queue: a resume needs the same seed."),
                io.Float.Input("caption_dropout", default=_DEFAULTS.caption_dropout, min=0.0, max=0.9, step=0.01,
                               advanced=True, tooltip="Share of steps trained with an empty caption (recipe default 0.05), so the "
                                       "LoRA also works on prompts that do not describe it fully."),
                io.Int.Input("checkpoint_every", default=_DEFAULTS.checkpoint_every, min=1, max=100000,
                             advanced=True, tooltip="Save a resumable checkpoint and a ready-to-use LoRA file every this many "
                                     "steps (recipe default 250)."),
                io.Int.Input("keep_checkpoints", default=_DEFAULTS.keep_checkpoints, min=0, max=1000,
                             advanced=True, tooltip="Keep only the newest N checkpoints to save disk space (default 3; 0 keeps all)."),
                io.String.Input("targets", default="", advanced=True,
                                tooltip="Which layers the LoRA changes; empty (default) = the recipe's. Presets, comma "
                                        "separated: video_attn, video_ff, audio_attn, audio_ff, av_cross_attn; "
                                        "or layer name endings like attn1.to_q."),
                io.Combo.Input("schedule", options=["linear", "cosine", "constant"], default=_DEFAULTS.schedule,
                               advanced=True, tooltip="How the learning rate changes over the run. linear (default, as Lightricks' "
                                       "trainer): falls to 0.1x by the last step; cosine: falls to 0; constant."),
                io.Int.Input("warmup_steps", default=0, min=0, max=10000, advanced=True,
                             tooltip="Ramp the learning rate up over the first N steps (default 0)."),
                io.Int.Input("batch_size", default=1, min=1, max=64, advanced=True,
                             tooltip="Samples per step (recipe default 1). Only samples of the same size share a "
                                     "batch; more needs more memory."),
                io.Int.Input("gradient_accumulation", default=1, min=1, max=64, advanced=True,
                             tooltip="Average this many batches per step: a larger effective batch "
                                     "without more memory, but each step takes that much longer (default 1)."),
                io.Boolean.Input("gradient_checkpointing", default=True, advanced=True,
                                 tooltip="On (default): far less memory, about 30% slower. Turn off only if "
                                         "the GPU has memory to spare."),
                io.Combo.Input("mixed_precision", options=["bf16", "no"], default="bf16", advanced=True,
                               tooltip="bf16 (default): compute in bfloat16. no: full float32, slower and "
                                       "more memory, for debugging."),
                io.Combo.Input("optimizer", options=["adamw", "adamw8bit"], default="adamw", advanced=True,
                               tooltip="adamw (default). adamw8bit keeps optimizer state in 8 bits, saving "
                                       "memory at large ranks; needs the bitsandbytes package."),
                io.Boolean.Input("train_audio", default=False, advanced=True,
                                 tooltip="Also train the audio half of the model (default off; always on with the "
                                         "audio_video recipe). Needs 'audio' on in Latent Precompute."),
                io.Combo.Input("silent_clips", options=list(SILENT_CLIP_CHOICES), default="train video-only",
                               advanced=True,
                               tooltip="Audio runs: what to do with clips that have no sound track. train video-only "
                                       "(default): they still teach the picture, in the same run, without audio "
                                       "tokens. exclude: leave them out. Either way the report lists them."),
                io.Combo.Input("run_on", options=list(RUN_ON), default=RUN_ON[0], advanced=True,
                               tooltip="this ComfyUI (default): train here, on this GPU. export job: write the run's "
                                       "job file instead and show the command that trains it outside the server, "
                                       "on one GPU or, with torchrun, on several; the LoRA it makes is the same."),
                io.Int.Input("gpus", default=2, min=1, max=64, advanced=True,
                             tooltip="For 'export job': how many GPUs the shown command uses (torchrun). "
                                     "gradient_accumulation must be a multiple of it: the GPUs share each step's "
                                     "batches, so the LoRA matches one trained here."),
                io.String.Input("resume_from", default="", optional=True, advanced=True,
                                tooltip="With 'resume' on: the checkpoint to continue from, as a step number (750) "
                                        "or a file name (step_000750.ckpt) in the run's checkpoints folder. Empty "
                                        "(default): the newest one that reads."),
            ],
            outputs=[
                LORA.Output(display_name="lora", tooltip="The trained LoRA: feed Save Comfy LoRA or Validation Sweep."),
                io.Model.Output(display_name="model", tooltip="The input model with the LoRA applied at strength 1."),
                io.LossMap.Output(display_name="loss", tooltip="Loss per step, for ComfyUI's Loss Graph node."),
                io.String.Output(display_name="report", tooltip="Steps, final loss, where the LoRA and "
                                 "checkpoints are, and the training self-check."),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.extra_pnginfo],
            not_idempotent=True,
        )

    @classmethod
    def execute(cls, model, latent_cache, recipe, run_name, steps, rank, alpha, learning_rate, trigger_word,
                resume, seed, caption_dropout=_DEFAULTS.caption_dropout,
                checkpoint_every=_DEFAULTS.checkpoint_every, keep_checkpoints=_DEFAULTS.keep_checkpoints,
                targets="", schedule=_DEFAULTS.schedule, warmup_steps=0, batch_size=1, gradient_accumulation=1,
                gradient_checkpointing=True, mixed_precision="bf16", optimizer="adamw",
                train_audio=False, silent_clips="train video-only", run_on=RUN_ON[0], gpus=2,
                resume_from="") -> io.NodeOutput:
        import comfy.sd

        cfg = recipe_config(
            recipe, steps=steps, rank=rank, alpha=alpha, learning_rate=learning_rate, trigger=trigger_word,
            seed=seed, caption_dropout=caption_dropout, checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints, targets=_targets(targets, recipe), schedule=schedule,
            warmup_steps=warmup_steps, batch_size=batch_size, gradient_accumulation=gradient_accumulation,
            gradient_checkpointing=gradient_checkpointing, mixed_precision=mixed_precision, optimizer=optimizer,
            train_audio=train_audio or RECIPES[recipe].get("train_audio", False),
            silent_clips=SILENT_CLIP_CHOICES[silent_clips])
        out_dir = run_folder(run_name, resume)
        if run_on == "export job":
            return cls._export(model, latent_cache, cfg, out_dir, resume, gpus)
        data = latent_cache.open()
        data_notes = data.notes() + verify_cache(data)
        run = train_on_loaded_model(model, data, cfg, out_dir, node_id=cls.hidden.unique_id, resume=resume,
                                    resume_from=resume_from, buckets=latent_cache.buckets,
                                    dataset_fingerprint=getattr(latent_cache, "dataset_fingerprint", ""),
                                    workflow_id=workflow_id(cls.hidden.extra_pnginfo))
        result, trainer, parity = run.result, run.trainer, run.parity

        newest = latest_checkpoint(os.path.join(out_dir, "checkpoints"))
        final = str(newest.with_suffix(".safetensors"))
        weights = {n: (A.cpu(), B.cpu()) for n, (A, B) in result.lora.effective_weights().items()}
        meta = trainer.metadata()
        lora = LoraFile(weights=weights, metadata=meta, source_format="ltx23-trainer",
                        rank=cfg.rank, path=final)
        lora_sd = comfy_state_dict(weights, dtype=torch.float32)
        model_out, _ = comfy.sd.load_lora_for_models(model, None, lora_sd, 1.0, 0)
        kind = (f", IC-LoRA at reference downscale factor {meta['reference_downscale_factor']}"
                if trainer.strategy.name == "ic" else "")
        report = (f"trained {result.steps_done} steps ({cfg.recipe}{kind}, rank {cfg.rank}, {len(result.lora.names)} "
                  f"modules) on {len(data)} samples; final loss EMA {trainer.loss_ema or float('nan'):.4f}\n"
                  f"LoRA: {final}\ncheckpoints: {os.path.join(out_dir, 'checkpoints')}\n"
                  f"training forward matches ComfyUI {parity.comfyui_version} (max rel. diff "
                  f"{parity.max_rel_error:.1e})" + cross_timestep_note(parity, cfg.train_audio)
                  + silent_clips_note(data, trainer.excluded, cfg.train_audio)
                  + (f"\n{result.learning.line()}" if result.learning else ""))
        report += "".join(f"\n{note}" for note in data_notes + trainer.resume_notes)
        return io.NodeOutput(lora, model_out, {"loss": list(result.losses)}, report)

    @classmethod
    def _export(cls, model, latent_cache, cfg, out_dir, resume, gpus) -> io.NodeOutput:
        if cfg.gradient_accumulation % gpus:
            raise ValueError(f"gradient_accumulation {cfg.gradient_accumulation} does not divide among {gpus} GPUs: "
                             f"set it to a multiple of {gpus} (the GPUs share each step's batches)")
        job_path, cmd = export_job(model, latent_cache.path, cfg, out_dir, buckets=latent_cache.buckets,
                                   resume=resume, gpus=gpus)
        report = (f"job written: {job_path}\nrun it (from a shell, with ComfyUI's Python):\n{cmd}\n"
                  f"checkpoints and the LoRA go to {os.path.join(out_dir, 'checkpoints')}; its progress is in "
                  f"{os.path.join(out_dir, 'events.jsonl')}")
        from comfy_execution.graph_utils import ExecutionBlocker

        # Nothing was trained here: nodes that need the LoRA wait for the job's file instead of failing.
        skipped = ExecutionBlocker(None)
        return io.NodeOutput(skipped, skipped, skipped, report,
                             ui=report_ui(report, verdict="exported as a job: run the command below", tone="info"))


NODES = [LoraTrainerNode]
