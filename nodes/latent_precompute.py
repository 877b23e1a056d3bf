"""Latent Precompute node: encodes the trimmed samples once into an on-disk cache the trainer reads.

The ComfyUI-facing parts live here: adapters that make ComfyUI's VAE, CLIP + MODEL (text connectors) and audio
VAE satisfy ``trainer_core.cache.encoders``' protocols, progress, cancel and freeing models. Everything else (keys,
reuse, resume, layout) is ``trainer_core.cache.precompute``.

Text: ComfyUI's LTX-2.x text encoder returns *unprocessed* Gemma features; the text connectors are part of the
diffusion model. The node runs them here, once per distinct text, through the MODEL's own
``preprocess_text_embeds``, so the cache holds exactly what the DiT's cross-attention consumes and training never
runs Gemma or the connectors. CLIP is a required input: without a text encoder there is no identity to key text
by. Tests (and any future "conditioning in" path) pass an object with ``tokenize`` and
``encode_from_tokens_scheduled``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from fractions import Fraction

import torch
from comfy_api.latest import InputImpl, Types, io, ui

from ..comfy_adapters.report import report_ui
from ..trainer_core.training.estimate import format_bytes
from ..trainer_core.cache import latent_cache as lc
from ..trainer_core.cache.encoders import check_frames, module_identity
from ..trainer_core.cache.precompute import decode_check as decode_cached, precompute
from ..trainer_core.cache.references import PAIRS, SOURCES, ReferenceSpec
from ..trainer_core.paths import resolve_under

SAMPLES = io.Custom("LTX23_SAMPLES")
LATENT_CACHE = io.Custom("LTX23_LATENT_CACHE")
DEFAULT_FOLDER = "ltx23_latent_cache"
_CONNECTOR_MODULES = ("caption_projection", "audio_caption_projection", "video_embeddings_connector",
                      "audio_embeddings_connector")


def resolve_folder(folder: str) -> str:
    """Relative folders live in ComfyUI's output directory (and may not leave it); absolute ones are used as given."""
    import folder_paths

    return resolve_under(folder.strip() or DEFAULT_FOLDER, folder_paths.get_output_directory(), "cache folder")


def _patch_identity(patcher, prefix: str = "") -> list:
    # LoRAs applied to the model change its outputs; their keys and strengths stand for them in the identity.
    patches = getattr(patcher, "patches", None) or {}
    return sorted((k, [(p[0], p[2]) for p in v]) for k, v in patches.items() if k.startswith(prefix))


class ComfyVideoEncoder:
    """``VideoEncoder``/``VideoDecoder`` over ``comfy.sd.VAE``. ComfyUI's LTX VAE already returns normalised
    latent means and falls back to tiled encoding when the device runs out of memory; "always" forces tiles."""

    def __init__(self, vae, tiling: str = "auto"):
        self.vae = vae
        self.tiling = tiling
        self.identity = "comfy-vae:" + module_identity(
            vae.first_stage_model, {"class": type(vae.first_stage_model).__name__, "dtype": str(vae.vae_dtype)})

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        check_frames(frames)
        out = []
        for clip in frames:  # vae.encode takes one clip as [T, H, W, C]; frames are batch entries to it
            if self.tiling == "always":
                out.append(self.vae.encode_tiled(clip, tile_x=512, tile_y=512, overlap=64))
            else:
                out.append(self.vae.encode(clip))
        return torch.cat(out).float().cpu()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).float().cpu()


class ComfyTextConditioner:
    """``TextConditioner``: CLIP (Gemma) encodes each text, then the MODEL's connectors process it.

    Gemma runs for the whole batch first and the DiT is loaded once afterwards, so the two large models are
    never needed at the same time. The connectors run without gradients and outside inference mode on cloned
    inputs, so the cached tensors are ordinary tensors with no autograd history.
    """

    def __init__(self, clip, model):
        self.clip = clip
        self.model = model
        self.dit = model.model.diffusion_model
        if not hasattr(self.dit, "preprocess_text_embeds"):
            raise ValueError(f"the MODEL input is a {type(self.dit).__name__}, not an LTX-2.x audio-video model; "
                             "connect the LTX-2.3 checkpoint's MODEL")
        connectors = torch.nn.ModuleDict({n: getattr(self.dit, n) for n in _CONNECTOR_MODULES
                                          if isinstance(getattr(self.dit, n, None), torch.nn.Module)})
        te = getattr(clip, "cond_stage_model", None)
        te_id = module_identity(te) if isinstance(te, torch.nn.Module) else type(clip).__name__
        self.identity = "comfy-te:{}:{}:connectors:{}".format(
            te_id, json.dumps(_patch_identity(getattr(clip, "patcher", None))),
            module_identity(connectors, _patch_identity(model, "diffusion_model.")))

    def encode(self, texts):
        import comfy.model_management as mm

        raw = []
        for text in texts:
            cond = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(text))
            raw.append(cond[0][0].to("cpu"))
        mm.load_models_gpu([self.model])
        device, dtype = self.model.load_device, self.model.model.get_dtype_inference()
        out = []
        with torch.inference_mode(False), torch.no_grad():
            for r in raw:
                processed = self.dit.preprocess_text_embeds(r.clone().to(device=device, dtype=dtype),
                                                            unprocessed=True)
                out.append(processed[0].float().cpu())
        return out


class ComfyAudioEncoder:
    """``AudioEncoder`` over ComfyUI's LTX audio VAE, resampling as ``LTXVAudioVAEEncode`` does."""

    def __init__(self, audio_vae):
        self.vae = audio_vae
        self.identity = "comfy-audio-vae:" + module_identity(audio_vae.first_stage_model)

    def encode(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        import torchaudio

        rate = getattr(self.vae, "audio_sample_rate", 44100)
        if rate != sample_rate:
            waveform = torchaudio.functional.resample(waveform, sample_rate, rate)
        return self.vae.encode(waveform[None].movedim(1, -1))[0].float().cpu()


def unload(*patchers) -> None:
    """Unloads just these models through ComfyUI's model management (the MODEL stays loaded for training)."""
    import comfy.model_management as mm

    targets = [p for p in patchers if p is not None]
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        loaded = mm.current_loaded_models[i]
        if any(loaded.model is p for p in targets):
            loaded.model_unload()
            mm.current_loaded_models.pop(i)
    mm.soft_empty_cache()


def _samples_of(samples) -> list:
    items = getattr(samples, "samples", samples)
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"'samples' must come from the LTX-2.3 Frame Trimmer (LTX23_SAMPLES), got {type(samples)}")
    return list(items)


def _save_preview(frames: torch.Tensor, fps: float, name: str) -> ui.SavedResult:
    import folder_paths

    folder = os.path.join(folder_paths.get_temp_directory(), "ltx23_decode_check")
    os.makedirs(folder, exist_ok=True)
    file = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".mp4"
    rate = Fraction(fps).limit_denominator(1001)
    video = InputImpl.VideoFromComponents(Types.VideoComponents(images=frames, frame_rate=rate))
    video.save_to(os.path.join(folder, file), format=Types.VideoContainer.MP4, codec=Types.VideoCodec.H264)
    return ui.SavedResult(file, "ltx23_decode_check", io.FolderType.temp)


class LatentPrecompute(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LTX23Trainer_LatentPrecompute",
            display_name="LTX-2.3 Latent Precompute",
            category="LTX-2.3 Trainer/Data",
            description="Encodes every sample once (video VAE, text encoder + connectors, optional audio VAE) into "
                        "a cache folder. Training then needs neither the VAE nor the text encoder. Re-runs reuse "
                        "what is still valid and resume interrupted runs.",
            inputs=[
                SAMPLES.Input("samples", tooltip="The trimmed samples, from the LTX-2.3 Frame Trimmer."),
                io.Vae.Input("vae", tooltip="The LTX-2.3 video VAE (the VAE output of Load Checkpoint)."),
                io.Clip.Input("clip", tooltip="The LTX-2.3 text encoder (Gemma 3 12B, from LTXV Audio Text Encoder "
                            "Loader). It is unloaded again once the captions are encoded."),
                io.Model.Input("model", tooltip="The LTX-2.3 MODEL you will train: its text connectors turn the "
                             "encoder's output into what the model reads."),
                io.Vae.Input("audio_vae", optional=True, tooltip="The LTX-2.3 audio VAE (LTXV Audio VAE Loader); needed only "
                            "when 'audio' is on."),
                io.String.Input("cache_folder", default=DEFAULT_FOLDER,
                                tooltip="Where the encoded latents are stored. Relative paths are inside "
                                        "ComfyUI's output folder. Re-runs reuse what is still valid."),
                io.Boolean.Input("audio", default=False,
                                 tooltip="Also encode each window's sound, cut from its clip's own track to the "
                                         "window's frames (default off). Clips without a sound track are listed; "
                                         "the trainer's 'silent_clips' trains them video-only or leaves them out. "
                                         "Needed for the audio_video recipe and 'train_audio'."),
                io.String.Input("validation_prompts", default="", multiline=True,
                                tooltip="Optional: one prompt per line, encoded now so validation can use "
                                        "them later without loading the text encoder again."),
                io.Int.Input("decode_check", default=1, min=0, max=16, tooltip="Decode this many cached latents "
                             "back to video (default 1), to see what the model will learn from; 0 skips it."),
                io.Int.Input("batch_size", default=1, min=1, max=16, advanced=True,
                             tooltip="Clips of one bucket decoded and held in memory together "
                             "(default 1); higher is faster with memory to spare."),
                io.Combo.Input("vae_tiling", options=["auto", "always"], default="auto", advanced=True,
                               tooltip="auto (default): tiled encoding only when memory runs out; "
                               "always: tiled for every clip (slower, least memory)."),
                io.Combo.Input("storage_dtype", options=["bf16", "fp32"], default="bf16", advanced=True,
                               tooltip="Precision of the stored latents: bf16 (default) is half the disk space "
                                       "and what training computes in; fp32 for exact debugging."),
                io.Boolean.Input("prune_stale", default=False, advanced=True,
                                 tooltip="Delete cache files that no current sample or prompt uses "
                                 "(default off)."),
                io.Combo.Input("reference", options=list(SOURCES), default=PAIRS,
                               tooltip="IC-LoRA references. dataset pairs (default): each clip's reference video "
                                       "(manifest reference_video column, or clip.ref.mp4 next to clip.mp4); clips "
                                       "without one train text-to-video. The others derive the reference from "
                                       "the clip itself, for a control IC-LoRA from target clips only: edges, "
                                       "low resolution (detail/upscale), grayscale (colourize), inverted."),
                io.Int.Input("reference_downscale_factor", default=1, min=1, max=8,
                             tooltip="Encode references at the bucket size divided by this (default 1). 2 makes "
                                     "the reference 4x cheaper to train on; the LoRA records it so sampling uses "
                                     "the same factor. Must divide each bucket into multiples of 32."),
            ],
            outputs=[
                LATENT_CACHE.Output(display_name="cache", tooltip="The latent cache, for the LoRA Trainer."),
                io.String.Output(display_name="summary", tooltip="What was encoded, reused or skipped, and why."),
                io.Image.Output(display_name="preview", tooltip="Decoded frames of the first decode-checked "
                                "sample (one black frame when decode_check is 0)."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def fingerprint_inputs(cls, cache_folder=DEFAULT_FOLDER, **kwargs):
        # Re-run when the folder changed on disk (deleted, or rewritten by another run), not only when inputs did.
        try:
            manifest = lc.read_manifest(resolve_folder(cache_folder))
        except ValueError:
            return "unreadable"
        if not manifest or not manifest.get("complete"):
            return "incomplete"
        return manifest["fingerprint"]

    @classmethod
    def execute(cls, samples, vae, clip, model, cache_folder=DEFAULT_FOLDER, audio=False, validation_prompts="",
                decode_check=1, batch_size=1, vae_tiling="auto", storage_dtype="bf16", prune_stale=False,
                audio_vae=None, reference=PAIRS, reference_downscale_factor=1) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils

        items = _samples_of(samples)
        if audio and audio_vae is None:
            raise ValueError("'audio' is on but no audio VAE is connected: add an 'LTXV Audio VAE Loader' for the "
                             "LTX-2.3 checkpoint and connect it to audio_vae, or turn 'audio' off")
        if clip is None:
            raise ValueError("connect the LTX-2.3 text encoder (CLIP) to encode the captions")
        folder = resolve_folder(cache_folder)
        video_encoder = ComfyVideoEncoder(vae, vae_tiling)
        text = ComfyTextConditioner(clip, model)
        audio_encoder = ComfyAudioEncoder(audio_vae) if audio else None
        pbar = None

        def on_progress(done, total, message):
            nonlocal pbar
            if pbar is None:
                pbar = comfy.utils.ProgressBar(max(total, 1), node_id=cls.hidden.unique_id)
            pbar.update_absolute(done, max(total, 1))

        def on_phase_done(phase):
            if phase == "text":
                unload(getattr(clip, "patcher", None))

        report = precompute(
            items, folder, video_encoder=video_encoder, text_conditioner=text, audio_encoder=audio_encoder,
            validation_prompts=[p.strip() for p in validation_prompts.splitlines()], batch_size=batch_size,
            storage_dtype=lc.DTYPES[storage_dtype], prune_stale=prune_stale, on_progress=on_progress,
            check_cancel=mm.throw_exception_if_processing_interrupted, on_phase_done=on_phase_done,
            reference=ReferenceSpec(reference, reference_downscale_factor))

        decoded = decode_cached(report.cache.open(), video_encoder, decode_check)
        unload(getattr(vae, "patcher", None), getattr(audio_vae, "patcher", None))

        results = [_save_preview(frames, fps, f"{sample_id}") for sample_id, frames, fps in decoded]
        if decoded:
            preview = decoded[0][1]
        else:
            first = items[0]
            preview = torch.zeros(1, first.height, first.width, 3)
        cache = dataclasses.replace(report.cache, dataset_fingerprint=getattr(samples, "dataset_fingerprint", ""))
        summary = report.summary()
        media = {"images": results, "animated": (True,)} if results else {}
        return io.NodeOutput(cache, summary, preview, ui=_report_ui(report, summary, media))


def _report_ui(report, summary: str, media: dict) -> dict:
    c = report.cache
    problems = []
    if report.no_audio:
        problems.append(("warning", f"{len(report.no_audio)} clips have no sound track; they train video-only",
                         "add sound to them, or leave 'train_audio' off"))
    if report.stale_files and not report.pruned:
        problems.append(("info", f"{len(report.stale_files)} cache files no sample uses "
                                 f"({report.stale_bytes / 1e6:.1f} MB)", "turn on prune_stale to delete them"))
    encoded, reused = report.computed.get("media", 0), report.reused.get("media", 0)
    return report_ui(
        summary, verdict=f"{c.num_samples} samples cached: {encoded} encoded, {reused} reused",
        tone="warn" if report.no_audio else "ok",
        counts=[("samples", c.num_samples, "ok"), ("encoded", encoded, "info"), ("reused", reused, "info"),
                ("on disk", format_bytes(c.bytes_on_disk), "info")],
        problems=problems,
        lines=["buckets: " + ", ".join(f"{b} x{n}" for b, n in sorted(c.buckets.items())), f"folder: {c.path}"],
        **media)


NODES = [LatentPrecompute]
