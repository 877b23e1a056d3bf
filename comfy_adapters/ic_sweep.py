"""The Validation Sweep for an IC-LoRA: the same reference guides every generation, applied at the LoRA's
``reference_downscale_factor`` through ComfyUI's own sampler, one row per (prompt, seed) and one column per strength
between the reference and the ground truth; scored by closeness to the ground truth (``output/sweep_ic``)."""

from __future__ import annotations

import dataclasses
import json
import os

import torch

from ..trainer_core.atomic import write_text_atomic
from ..trainer_core.output import sweep_grid
from ..trainer_core.output.sweep_ic import mse, reference_factor, score_ic
from .ic_guide import add_reference_guide, crop_reference_guide


@dataclasses.dataclass
class ICSweep:
    """Everything the sweep node already resolved (prompts, conditioning, sampler settings, output folder)."""

    model: object
    vae: object
    lora: object
    name: str
    apply_lora: object
    """``(model, lora, strength, name) -> patched model``."""
    rows: list
    """Rows with ``.prompt``, ``.seed``, ``.label``."""
    positives: dict
    negative: list
    strengths: list[float]
    cfg: float
    sampler: object
    sigmas: torch.Tensor
    size: tuple[int, int, int]
    """(width, height, frames)."""
    fps: float
    folder: str
    stem: str
    save_clips: bool
    progress: object


def _frames(images: torch.Tensor, frames: int, width: int, height: int, what: str) -> torch.Tensor:
    """``[T, H, W, 3]`` IMAGE -> its first ``frames`` frames at ``width x height`` (0..1)."""
    if images.shape[0] < frames:
        raise ValueError(f"the {what} has {images.shape[0]} frames but the sweep generates {frames}: connect a "
                         f"longer {what} or lower 'frames'")
    clip = images[:frames, ..., :3].float().permute(0, 3, 1, 2)
    clip = torch.nn.functional.interpolate(clip, size=(height, width), mode="bilinear", align_corners=False)
    return clip.permute(0, 2, 3, 1).clamp(0, 1)


def run_and_save(job: ICSweep, reference: torch.Tensor, ground_truth: torch.Tensor | None, subfolder: str,
                 header: str):
    """Runs the sweep and writes the grid and scores; returns (result, recommended, report, middle frame, ui)."""
    result, recommended, lines, grid = run_ic_sweep(job, reference, ground_truth)
    grid_path = os.path.join(job.folder, job.stem + "_grid.mp4")
    sweep_grid.write_mp4(grid_path, grid, job.fps)
    report = "\n".join([header, *lines, f"Saved to {os.path.join(job.folder, job.stem)}_grid.mp4"
                        + (" and _clips/" if job.save_clips else "")])
    result.update({"lora": job.name, "cfg": job.cfg, "size": list(job.size), "fps": job.fps, "grid": grid_path,
                   "prompts": {"trigger": [r.prompt for r in job.rows]}, "seeds": sorted({r.seed for r in job.rows})})
    write_text_atomic(os.path.join(job.folder, job.stem + "_scores.json"), json.dumps(result, indent=1))
    ui = {"images": [{"filename": job.stem + "_grid.mp4", "subfolder": subfolder, "type": "output"}],
          "animated": (True,), "text": (report,)}
    return result, recommended, report, grid[grid.shape[0] // 2][None].float() / 255, ui


def run_ic_sweep(job: ICSweep, reference: torch.Tensor, ground_truth: torch.Tensor | None):
    """Returns (result dict for SWEEP, recommended strength or None, report lines, grid video)."""
    import comfy.model_management as mm
    import comfy.sample

    width, height, frames = job.size
    factor = reference_factor(job.lora.metadata)
    if width % (32 * factor) or height % (32 * factor):
        raise ValueError(f"the LoRA's reference_downscale_factor is {factor}, so width and height must be multiples "
                         f"of {32 * factor} (got {width}x{height})")
    ref_pixels = _frames(reference, frames, width // factor, height // factor, "reference")
    truth = None if ground_truth is None else _frames(ground_truth, frames, width, height, "ground truth")
    ref_latent = job.vae.encode(ref_pixels).float()
    truth_latent = None if truth is None else job.vae.encode(truth).float()
    empty = {"samples": torch.zeros(1, 128, (frames - 1) // 8 + 1, height // 32, width // 32)}

    decoded, errors, pixel_errors = {}, {s: [] for s in job.strengths}, {s: [] for s in job.strengths}
    for strength in job.strengths:
        patched = job.apply_lora(job.model, job.lora, strength, job.name)
        for i, row in enumerate(job.rows):
            mm.throw_exception_if_processing_interrupted()
            pos, neg, latent = add_reference_guide(job.positives[row.prompt], job.negative, empty, ref_latent, factor)
            noise = comfy.sample.prepare_noise(latent["samples"], row.seed)
            out = comfy.sample.sample_custom(patched, noise, job.cfg, job.sampler, job.sigmas, pos, neg,
                                             latent["samples"], noise_mask=latent["noise_mask"], disable_pbar=True,
                                             seed=row.seed)
            _, _, cropped = crop_reference_guide(pos, neg, {"samples": out, "noise_mask": latent["noise_mask"]})
            clip = job.vae.decode(cropped["samples"].float())[0].float().clamp(0, 1)
            if truth is not None:
                errors[strength].append(mse(cropped["samples"].float(), truth_latent))
                pixel_errors[strength].append(mse(clip, truth))
            if job.save_clips:
                name = f"ic{row.prompt_index + 1}_seed{row.seed}_s{strength:g}.mp4"
                sweep_grid.write_mp4(os.path.join(job.folder, job.stem + "_clips", name), clip, job.fps)
            decoded[(i, strength)] = sweep_grid.fit_clip(clip, sweep_grid.grid_cell_size(
                height, width, len(job.rows), len(job.strengths) + (2 if truth is not None else 1)))
            job.progress(1)

    columns = ["reference", *[f"{s:g}" for s in job.strengths], *(["ground truth"] if truth is not None else [])]
    ref_view = torch.nn.functional.interpolate(ref_pixels.permute(0, 3, 1, 2), size=(height, width),
                                               mode="nearest").permute(0, 2, 3, 1)
    cells = {}
    for i in range(len(job.rows)):
        cells[(i, 0)] = ref_view
        for c, strength in enumerate(job.strengths, start=1):
            cells[(i, c)] = decoded[(i, strength)]
        if truth is not None:
            cells[(i, len(columns) - 1)] = truth
    grid = sweep_grid.assemble_grid(cells, [(r.label, r.prompt) for r in job.rows], columns,
                                    corner="IC-LoRA strength:")
    lines = [f"IC-LoRA: reference applied at downscale factor {factor} (the LoRA's reference_downscale_factor)."]
    if truth is None:
        result = {"kind": "ic", "recommended": None, "scores": None, "reference_downscale_factor": factor}
        lines.append("No ground truth connected: the grid shows reference | generated only, and nothing is scored.")
        return result, None, lines, grid
    scores = score_ic(errors, pixel_errors)
    lines.append(scores.report())
    result = {"kind": "ic", "recommended": scores.recommended, "scores": scores.as_dict(),
              "reference_downscale_factor": factor}
    return result, scores.recommended, lines, grid
