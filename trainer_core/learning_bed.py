"""The learning test bed: a tiny LTX-2.3-shaped base model that knows a small world, and clips of a concept it
does not know, all through the pack's own data path. The demo and the tests train a LoRA on it and check that it
learned the concept and bound it to the trigger (``training.learning_check``).

Why a pre-trained base: a random-weight DiT predicts worse than zero, so any LoRA lowers every loss, trigger or
not. A short seeded pre-training on the world's clips (``concept_clips`` role "base") gives a base that already
predicts the world well; only then does a LoRA's effect on the concept, on the same clips without the trigger, and
on off-topic clips mean something. Latents are unit-scale as LTX's are: the tiny VAE's per-channel statistics are
calibrated on the world's clips, the way the real VAE's were on its training data.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from .cache.latent_cache import LatentCache
from .cache.precompute import precompute
from .data import concept_clips
from .data.concept_clips import TRIGGER
from .data.dataset import DatasetConfig, load_dataset
from .data.trimmer import TrimConfig, trim_dataset
from .output.sweep import ltx_sigmas, make_plan, strip_trigger
from .output.sweep_scores import concept_reference, score_sweep
from .training import objective
from .training.denoiser import DenoiserInput
from .training.diffusers_denoiser import DiffusersLTX2Denoiser, build_ltx2_transformer
from .training.learning_check import Case
from .training.sampling import sweep_latents

BUCKET = "64x64x9"
WIDTH, HEIGHT, FRAMES = 64, 64, 9
CONTEXT_LENGTH = 16


@dataclasses.dataclass
class Bed:
    denoiser: DiffusersLTX2Denoiser
    caches: dict[str, LatentCache]
    """Role -> cache; the "concept" cache also holds each caption without the trigger (as a validation prompt)."""
    trigger: str
    encoder: DiffusersVideoEncoder
    text: StandInTextConditioner
    base_reused: bool = False
    """The pre-trained base was loaded from an earlier run in the same folder."""

    def cases(self, role: str, strip: bool = False) -> list[Case]:
        cache = self.caches[role]
        out = []
        for i, entry in enumerate(cache.entries):
            item = cache.item(i)
            context = cache.prompt_context(strip_trigger(entry["caption"], TRIGGER)) if strip else item.context
            out.append(Case(item.video_latents, context, item.fps))
        return out


    def context_of(self, text: str) -> torch.Tensor:
        """The cached context of a caption or validation prompt of any role."""
        for cache in self.caches.values():
            if text in cache.manifest["prompts"]:
                return cache.prompt_context(text)
            for i, entry in enumerate(cache.entries):
                if entry["caption"] == text:
                    return cache.item(i).context
        raise KeyError(f"{text!r} is not a caption or prompt of the test bed's caches")

    def sweep(self, weights, strengths=(0.0, 0.5, 1.0), seeds=(0, 1), prompts: int = 2, steps: int = 8):
        """The Validation Sweep on this bed, headless: held-out concept captions as trigger prompts (and without
        the trigger), held-out off-topic captions, scored against the cached training clips."""
        concept, off_topic = self.caches["concept"], self.caches["off_topic"]
        plan = make_plan(TRIGGER, [concept.caption(i) for i in range(prompts)],
                         [off_topic.caption(i) for i in range(prompts)], strengths=strengths, seeds=seeds)
        shape = tuple(concept.item(0).video_latents.shape[1:])
        latents = sweep_latents(self.denoiser, plan, self.context_of, weights, shape,
                                ltx_sigmas(steps, shape[0] * shape[1] * shape[2]), concept.item(0).fps)
        return score_sweep(plan, latents, concept_reference(self.caches["train"], TRIGGER))


def calibrated_vae(seed: int = 0):
    """The tiny VAE with ``latents_mean``/``latents_std`` set to the statistics of the world's clips, so cached
    latents have about unit variance per channel."""
    vae = build_tiny_vae(seed=seed)
    vae.latents_mean.zero_()
    vae.latents_std.fill_(1.0)
    spec = concept_clips.role_specs("base")[::3]
    frames = torch.stack([concept_clips.render_clip(*s, frames=FRAMES, width=WIDTH, height=HEIGHT) for s in spec])
    raw = DiffusersVideoEncoder(vae, tiling="never").encode(frames)
    vae.latents_mean.copy_(raw.mean(dim=(0, 2, 3, 4)))
    vae.latents_std.copy_(raw.std(dim=(0, 2, 3, 4)).clamp_min(1e-3))
    return vae


def cache_roles(folder: Path, roles, encoder, text, trigger: str) -> dict[str, LatentCache]:
    folders = concept_clips.write_concept_dataset(folder / "clips", roles=roles, trigger=trigger, frames=FRAMES,
                                                  width=WIDTH, height=HEIGHT)
    caches = {}
    for role, clips in folders.items():
        samples = trim_dataset(load_dataset(DatasetConfig(source=str(clips))), TrimConfig.from_text(BUCKET)).samples
        # Held-out concept clips also need their captions without the trigger.
        prompts = [strip_trigger(s.caption, TRIGGER) for s in samples] if role == "concept" else []
        report = precompute(samples, str(folder / "cache" / role), video_encoder=encoder, text_conditioner=text,
                            validation_prompts=prompts, batch_size=8)
        caches[role] = report.cache.open()
    return caches


def pretrain(denoiser: DiffusersLTX2Denoiser, data: LatentCache, steps: int, lr: float = 2e-3, batch: int = 8,
             seed: int = 0) -> list[float]:
    """Full-weight training of the base on ``data`` with the training objective; returns the losses."""
    model = denoiser.transformer
    items = [data.item(i) for i in range(len(data))]
    x_all = torch.stack([it.video_latents.float() for it in items])
    ctx_all = torch.stack([it.context.float() for it in items])
    gen = torch.Generator().manual_seed(seed)
    sampler = objective.SigmaSampler()
    tokens = objective.video_token_count(x_all)
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - 0.9 * s / max(1, steps - 1))
    losses = []
    try:
        with torch.enable_grad():
            for _ in range(steps):
                pick = torch.randint(len(items), (batch,), generator=gen)
                x0, context = x_all[pick], ctx_all[pick]
                sigma = sampler.sample(batch, tokens, gen)
                noise = torch.randn(x0.shape, generator=gen)
                token_sigma = sigma[:, None].expand(batch, tokens)
                inputs = DenoiserInput(video=objective.noisy_input(x0, noise, token_sigma),
                                       video_timesteps=token_sigma, sigma=sigma, context=context, fps=items[0].fps)
                loss = (denoiser(inputs).video - objective.velocity_target(x0, noise)).pow(2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
    finally:
        model.requires_grad_(False)
    return losses


def build_bed(folder: str | Path, *, trigger: str = TRIGGER, pretrain_steps: int = 300, seed: int = 0,
              roles=concept_clips.ROLES) -> Bed:
    """Writes the clips, caches every role and pre-trains the base on the "base" role. ``trigger=""`` writes the
    training captions without the trigger (the control that must fail the binding check); the held-out concept
    captions keep it."""
    folder = Path(folder)
    torch.manual_seed(seed)
    denoiser = DiffusersLTX2Denoiser(build_ltx2_transformer("ltx-2.3", "learnable", seed=seed), "ltx-2.3")
    encoder = DiffusersVideoEncoder(calibrated_vae(seed), tiling="never")
    text = StandInTextConditioner(width=sum(denoiser.context_widths()), length=CONTEXT_LENGTH, seed=seed)
    caches = cache_roles(folder, [r for r in roles if r != "train"], encoder, text, TRIGGER)
    if "train" in roles:
        caches.update(cache_roles(folder / ("train" if trigger else "train_no_trigger"), ["train"], encoder, text,
                                  trigger))
    reused = _pretrained(denoiser, caches["base"], folder / f"base_model_s{seed}_{pretrain_steps}.safetensors",
                         pretrain_steps, seed)
    return Bed(denoiser, caches, trigger, encoder, text, reused)


def _pretrained(denoiser: DiffusersLTX2Denoiser, data: LatentCache, path: Path, steps: int, seed: int) -> bool:
    """Pre-trains once per folder, cache and settings; later runs load the weights (as the demo reuses its
    latent cache). True when loaded."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from .atomic import atomic_path

    model = denoiser.transformer
    if path.exists():
        with safe_open(str(path), "pt") as fh:
            same_data = (fh.metadata() or {}).get("data") == data.fingerprint()
        if same_data:
            model.load_state_dict(load_file(str(path)))
            return True
    pretrain(denoiser, data, steps, seed=seed)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"data": data.fingerprint()})
    return False
