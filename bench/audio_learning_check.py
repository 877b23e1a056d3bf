"""Learning check for audio-video LoRAs (prints figures; not a unit test: ~400 training steps, minutes on CPU).

Usage: python bench/audio_learning_check.py [STEPS] [SEED ...]

Does an audio-video LoRA learn a sound tied to a trigger? On a tiny LTX-2.3 model, clips whose caption holds the
trigger always come with one steady tone; other clips come with other tones. After training, the held-out audio
denoising loss of the tone under trigger prompts falls well below the base model's, and much less under the same
kind of prompts without the trigger.

Two things make a random tiny model a fair stand-in for LTX-2.3 here:
* its audio stream is 8 wide, so it can only output sounds in the 8-dimensional span of ``audio_proj_out`` (the
  real model's 2048-wide stream spans every latent); the world's tones are drawn from that span;
* a random model is no denoiser at all, so any LoRA would first learn generic denoising, on every prompt alike.
  The base is therefore first taught generic steady tones (a LoRA merged into its weights), as the real base knows
  sound; the learning check then trains the trigger LoRA on top of it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tiny import tiny_denoiser  # noqa: E402
from trainer_core.cache.training_data import InMemoryData, TrainItem  # noqa: E402
from trainer_core.training import objective  # noqa: E402
from trainer_core.training.config import recipe_config  # noqa: E402
from trainer_core.training.denoiser import DenoiserInput  # noqa: E402
from trainer_core.training.trainer import LoraTrainer  # noqa: E402

CTX_LEN, AUDIO_T, LATENT = 6, 9, (2, 2, 2)


class World:
    def __init__(self, denoiser, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)
        self.width = sum(denoiser.context_widths())
        self.span = denoiser.transformer.audio_proj_out.weight.detach().clone()  # [128 = 8 ch x 16 bins, d]
        self.trigger = torch.randn(self.width, generator=self.gen)
        self.tone = self.steady_tone()

    def steady_tone(self) -> torch.Tensor:
        """A held tone's latent is the same at every time step (the audio VAE codes a short-time spectrum)."""
        token = self.span @ torch.randn(self.span.shape[1], generator=self.gen)
        token = token / token.pow(2).mean().sqrt()
        return token.reshape(8, 1, 16).expand(8, AUDIO_T, 16).clone()

    def caption(self, trigger: bool) -> torch.Tensor:
        ctx = torch.randn(CTX_LEN, self.width, generator=self.gen)
        if trigger:
            ctx[0] = self.trigger
        return ctx

    def clip(self, name: str, trigger: bool) -> TrainItem:
        audio = (self.tone if trigger else self.steady_tone()) + 0.05 * torch.randn(8, AUDIO_T, 16, generator=self.gen)
        return TrainItem(name, torch.randn(128, *LATENT, generator=self.gen), self.caption(trigger), 24.0,
                         audio_latents=audio)

    def data(self, trigger_clips: int, other_clips: int, name: str) -> InMemoryData:
        items = [self.clip(f"trigger{i}.mp4", True) for i in range(trigger_clips)]
        items += [self.clip(f"other{i}.mp4", False) for i in range(other_clips)]
        return InMemoryData(items, empty=torch.zeros(CTX_LEN, self.width), name=name)


def _config(steps: int, seed: int):
    return recipe_config("audio_video", steps=steps, rank=8, alpha=8, learning_rate=1e-2, caption_dropout=0.0,
                         mixed_precision="no", gradient_checkpointing=False, checkpoint_every=steps,
                         keep_checkpoints=1, schedule="constant", seed=seed)


def tone_loss(denoiser, world: World, trigger: bool, n: int = 8, seed: int = 100) -> float:
    """Held-out audio denoising loss of the tone: fresh captions and video, fixed sigma and noise draws. Sigmas
    0.5-0.95, where the sound must come from the prompt: below, the noisy input itself gives the tone away."""
    gen = torch.Generator().manual_seed(seed)
    captions = torch.Generator().manual_seed(seed + 1)
    losses = []
    with torch.no_grad():
        for k in range(n):
            sigma = torch.tensor([0.5 + 0.45 * k / (n - 1)])
            ctx = torch.randn(1, CTX_LEN, world.width, generator=captions)
            if trigger:
                ctx[0, 0] = world.trigger
            x0 = torch.randn(1, 128, *LATENT, generator=gen)
            a0 = (world.tone + 0.05 * torch.randn(8, AUDIO_T, 16, generator=gen))[None]
            noise, a_noise = torch.randn(x0.shape, generator=gen), torch.randn(a0.shape, generator=gen)
            v_t, a_t = sigma[:, None].expand(1, 8), sigma[:, None].expand(1, AUDIO_T)
            out = denoiser(DenoiserInput(
                video=objective.noisy_input(x0, noise, v_t), video_timesteps=v_t, sigma=sigma, context=ctx, fps=24.0,
                audio=objective.noisy_input(a0, a_noise, a_t), audio_timesteps=a_t, audio_sigma=sigma))
            losses.append(objective.masked_mse(out.audio, a_noise - a0, torch.ones(1, AUDIO_T, dtype=torch.bool)))
    return float(torch.stack(losses).mean())


def learning_check(steps: int, seed: int, folder) -> dict[str, float]:
    d = tiny_denoiser(seed=seed)
    world = World(d, seed)
    generic = LoraTrainer(d, world.data(0, 12, "generic tones"), _config(steps, seed), f"{folder}/base").run()
    targets = d.lora_targets()
    with torch.no_grad():
        for name, (A, B) in generic.lora.effective_weights().items():
            targets[name].weight += B @ A
    base = {"trigger": tone_loss(d, world, True), "no_trigger": tone_loss(d, world, False)}
    run = LoraTrainer(d, world.data(6, 6, "trigger tone"), _config(steps, seed + 1), f"{folder}/lora").run()
    with run.lora.attached():
        lora = {"trigger": tone_loss(d, world, True), "no_trigger": tone_loss(d, world, False)}
    return {"base_trigger": base["trigger"], "base_no_trigger": base["no_trigger"],
            "lora_trigger": lora["trigger"], "lora_no_trigger": lora["no_trigger"]}


if __name__ == "__main__":
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    for seed in [int(x) for x in sys.argv[2:]] or [0, 1, 2]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            r = learning_check(steps, seed, tmp)
            drop = {k: 1 - r[f"lora_{k}"] / r[f"base_{k}"] for k in ("trigger", "no_trigger")}
            print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items())
                  + f"; drop with trigger {drop['trigger']:.1%}, without {drop['no_trigger']:.1%}"
                  + f" ({time.time() - t0:.0f} s wall)")
