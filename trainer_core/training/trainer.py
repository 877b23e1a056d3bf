"""The LoRA training loop: ltx-trainer's objective on any ``Denoiser``, with checkpoints that resume exactly.

Determinism: the data order of epoch ``e`` is a pure function of (seed, e), and every random draw of micro-batch
``k`` of step ``s`` (caption dropout, sigma, first-frame conditioning, noise) comes from a CPU generator seeded by
(seed, s, k). Resuming therefore replays the same steps an uninterrupted run takes, bit for bit on one device, and
the draws do not depend on how many processes share a step (``parallel``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch

from . import objective
from .checkpoints import checkpoint_path, load_checkpoint, load_resumable, prune_checkpoints, save_checkpoint
from .config import TrainConfig
from .denoiser import Denoiser, DenoiserInput
from .lora import LoraSet, select_targets
from .parallel import Parallel
from ..output.lora_file import lora_metadata, save_comfy_lora
from ..cache.training_data import TrainingData


@dataclasses.dataclass
class TrainEvent:
    kind: str
    """"step", "checkpoint", "stopped", "done" or "error"."""
    step: int
    total_steps: int
    loss: float | None = None
    loss_ema: float | None = None
    lr: float | None = None
    sigma: float | None = None
    sec_per_step: float | None = None
    eta_sec: float | None = None
    path: str | None = None
    message: str | None = None


@dataclasses.dataclass
class TrainResult:
    lora: LoraSet
    steps_done: int
    losses: list[float]
    checkpoints: list[str]
    stopped: bool
    """True when ``should_stop`` ended the run early; the last checkpoint resumes it."""


class NonFiniteLoss(RuntimeError):
    pass


def _outside_inference_mode(method):
    """ComfyUI runs every node under ``torch.inference_mode()``; tensors made there (LoRA weights, optimizer
    state) could never be trained. Every entry point of the trainer therefore leaves inference mode."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False):
            return method(*args, **kwargs)
    return wrapper


def epoch_batches(data: TrainingData, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of one epoch. Items only share a batch when their shapes and fps agree; a bucket with fewer
    items than the batch size still trains, in a smaller batch, rather than being dropped."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if batch_size == 1:
        return [[i] for i in torch.randperm(len(data), generator=gen).tolist()]
    groups: dict[tuple, list[int]] = {}
    for i in range(len(data)):
        groups.setdefault(data.group_key(i), []).append(i)
    batches = []
    for members in groups.values():
        order = [members[j] for j in torch.randperm(len(members), generator=gen).tolist()]
        batches.extend(order[k:k + batch_size] for k in range(0, len(order), batch_size))
    return [batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()]


class LoraTrainer:
    @_outside_inference_mode
    def __init__(self, denoiser: Denoiser, data: TrainingData, config: TrainConfig, output_dir: str | Path,
                 on_event: Callable[[TrainEvent], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, buckets=(), device: torch.device | None = None,
                 parallel: Parallel | None = None):
        self.denoiser = denoiser
        self.data = data
        self.cfg = config.validate()
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.on_event = on_event or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.buckets = tuple(buckets)
        self.parallel = parallel or Parallel()
        self.parallel.check(self.cfg.gradient_accumulation)
        if len(data) == 0:
            raise ValueError("the training data is empty: precompute at least one sample first")
        targets = select_targets(denoiser.lora_targets(), self.cfg.targets)
        # Offloaded (streamed) layers keep their weights elsewhere, so the compute device is given, not guessed.
        self.device = torch.device(device) if device is not None else next(iter(targets.values())).weight.device
        self.lora = LoraSet(targets, self.cfg.rank, self.cfg.alpha, seed=self.cfg.seed).to(self.device)
        self.sampler = objective.SigmaSampler(uniform_prob=self.cfg.sigma_uniform_prob)
        self.optimizer = self._make_optimizer()
        self.generator = torch.Generator()
        self.step = 0
        self.epoch, self.position = 0, 0
        self.losses: list[float] = []
        self.loss_ema: float | None = None
        self.resume_notes: list[str] = []
        self.lr_changes: list[dict] = []
        """What resume chose or changed (a skipped unreadable checkpoint, a new learning rate), for the report."""
        self._batches = epoch_batches(data, self.cfg.batch_size, self.cfg.seed, 0)
        # Frame rates drive LTX's RoPE positions; the LoRA's card records what it learned at.
        self.frame_rates = sorted({float(data.group_key(i)[-1]) for i in range(len(data))})
        self._check_context_shapes()

    def _make_optimizer(self):
        params = self.lora.trainable_parameters()
        kwargs = dict(lr=self.cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=self.cfg.weight_decay)
        if self.cfg.optimizer == "adamw8bit":
            try:
                import bitsandbytes as bnb
            except ImportError as exc:
                raise ValueError("optimizer 'adamw8bit' needs bitsandbytes: `pip install bitsandbytes`, "
                                 "or choose 'adamw'") from exc
            return bnb.optim.AdamW8bit(params, **kwargs)
        return torch.optim.AdamW(params, **kwargs)

    def _check_context_shapes(self) -> None:
        # Every item, from the cheap group keys: one odd context would only fail when caption dropout picks it.
        empty = tuple(self.data.empty_context().shape)
        odd = [i for i in range(len(self.data)) if tuple(self.data.group_key(i)[1]) != empty]
        if odd:
            named = ", ".join(f"{self.data.item(i).sample_id} {tuple(self.data.group_key(i)[1])}" for i in odd[:5])
            raise ValueError(f"{len(odd)} cached caption context(s) differ in shape from the empty caption's {empty} "
                             f"({named}), so caption dropout cannot swap them: re-run Latent Precompute, which fits "
                             "every caption to the text encoder's window")
        widths = sum(self.denoiser.context_widths())
        if empty[-1] != widths:
            raise ValueError(f"cached text context is {empty[-1]} wide but this model takes {widths}: the cache "
                             "was made for a different model; re-run Latent Precompute with this MODEL")

    # -- resume --------------------------------------------------------------------------------------------------

    @_outside_inference_mode
    def resume(self, checkpoint: str | Path, pick: str = "") -> None:
        """Continues from ``checkpoint`` (a file, or a run's checkpoints folder: its newest readable one, or the
        one ``pick`` names). The learning rate may differ from the checkpoint's; the change is recorded."""
        if Path(checkpoint).is_dir():
            state, self.resume_notes = load_resumable(checkpoint, pick)
        else:
            state = load_checkpoint(checkpoint)
        problems = self.cfg.resume_mismatches(state["config"])
        if state["data_fingerprint"] != self.data.fingerprint():
            problems.append("training data changed since the checkpoint")
        if problems:
            raise ValueError(f"cannot resume from {state['path']}: " + "; ".join(problems) +
                             ". Resume with the original settings and data, or start a new run.")
        self.lora.load_state(state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.losses = list(state["losses"])
        self.loss_ema = state["loss_ema"]
        self.lr_changes = list(state.get("lr_changes", []))
        old_lr = state["config"]["learning_rate"]
        if old_lr != self.cfg.learning_rate:
            self.lr_changes.append({"step": self.step, "from": old_lr, "to": self.cfg.learning_rate})
            self.resume_notes.append(f"learning rate changed at step {self.step}: {old_lr:g} -> "
                                     f"{self.cfg.learning_rate:g} (recorded in the LoRA's run card)")
        self._batches = epoch_batches(self.data, self.cfg.batch_size, self.cfg.seed, self.epoch)

    # -- the loop ------------------------------------------------------------------------------------------------

    @_outside_inference_mode
    def run(self) -> TrainResult:
        checkpoints: list[str] = []
        self.denoiser.set_gradient_checkpointing(self.cfg.gradient_checkpointing)
        sec_per_step = None
        with self.lora.attached(), torch.enable_grad():
            while self.step < self.cfg.steps:
                if self.parallel.any(self.should_stop(), self.device):
                    checkpoints.append(str(self._checkpoint()))
                    self._emit("stopped", path=checkpoints[-1],
                               message=f"stopped at step {self.step}; resume from {checkpoints[-1]}")
                    return TrainResult(self.lora, self.step, self.losses, checkpoints, stopped=True)
                started = time.perf_counter()
                cursor = self._cursor()
                loss, sigma = self._optimizer_step()
                if not math.isfinite(loss):
                    # The optimizer did not step, so the LoRA is still the last good state; rewind the data cursor
                    # so a resume retries this step with the same draws.
                    self._restore_cursor(cursor)
                    path = self._checkpoint()
                    msg = (f"loss became {loss} at step {self.step + 1}; training stopped and the last good state "
                           f"was saved to {path}. Lower the learning rate (or check the data), then queue again with "
                           "'resume' on: a resume may change the learning rate.")
                    self._emit("error", path=str(path), message=msg)
                    raise NonFiniteLoss(msg)
                self.step += 1
                self.losses.append(loss)
                beta = self.cfg.loss_ema_beta
                self.loss_ema = loss if self.loss_ema is None else beta * self.loss_ema + (1 - beta) * loss
                took = time.perf_counter() - started
                sec_per_step = took if sec_per_step is None else 0.8 * sec_per_step + 0.2 * took
                self._emit("step", loss=loss, loss_ema=self.loss_ema, lr=self.cfg.lr_at(self.step - 1), sigma=sigma,
                           sec_per_step=sec_per_step, eta_sec=sec_per_step * (self.cfg.steps - self.step))
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    checkpoints.append(str(self._checkpoint()))
                    self._emit("checkpoint", path=checkpoints[-1])
        self._emit("done", loss=self.losses[-1] if self.losses else None, loss_ema=self.loss_ema)
        return TrainResult(self.lora, self.step, self.losses, checkpoints, stopped=False)

    def _optimizer_step(self) -> tuple[float, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total, sigma_sum = 0.0, 0.0
        for k in range(self.cfg.gradient_accumulation):
            batch = self._next_batch()
            if not self.parallel.owns(k):
                continue
            self.generator.manual_seed(self._draw_seed(k))
            loss, sigma = self._loss(batch)
            (loss / self.cfg.gradient_accumulation).backward()
            total += loss.item() / self.cfg.gradient_accumulation
            sigma_sum += sigma / self.cfg.gradient_accumulation
        params = self.lora.trainable_parameters()
        self.parallel.sum_gradients(params)
        total = self.parallel.sum(total, self.device)
        if math.isfinite(total):
            torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
            self.optimizer.step()
        return total, self.parallel.sum(sigma_sum, self.device)

    def _draw_seed(self, micro_batch: int) -> int:
        return (self.cfg.seed * 1_000_003 + self.step) * 1_009 + micro_batch

    def _next_batch(self) -> list[int]:
        if self.position >= len(self._batches):
            self.epoch += 1
            self.position = 0
            self._batches = epoch_batches(self.data, self.cfg.batch_size, self.cfg.seed, self.epoch)
        batch = self._batches[self.position]
        self.position += 1
        return batch

    def _loss(self, indices: list[int]) -> tuple[torch.Tensor, float]:
        cfg, gen, dev = self.cfg, self.generator, self.device
        items = [self.data.item(i) for i in indices]
        b = len(items)
        x0 = torch.stack([it.video_latents for it in items]).float()
        context = torch.stack([it.context for it in items]).float()
        drop = torch.rand(b, generator=gen) < cfg.caption_dropout
        if drop.any():
            context[drop] = self.data.empty_context().float()
        sigma = self.sampler.sample(b, objective.video_token_count(x0), gen)
        conditioned = (torch.rand(b, generator=gen) < cfg.first_frame_conditioning) & (x0.shape[2] > 1)
        generated = objective.first_frame_mask(x0, conditioned)
        token_sigma = sigma[:, None] * generated
        noise = torch.randn(x0.shape, generator=gen)
        inputs = DenoiserInput(
            video=objective.noisy_input(x0, noise, token_sigma).to(dev), video_timesteps=token_sigma.to(dev),
            sigma=sigma.to(dev), context=context.to(dev), fps=items[0].fps)
        audio = None
        if cfg.train_audio:
            audio = self._audio_inputs(items, inputs)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16"):
            out = self.denoiser(inputs)
        loss = objective.masked_mse(out.video, objective.velocity_target(x0, noise).to(dev), generated.to(dev))
        if audio is not None:
            a0, a_noise, a_generated = audio
            loss = loss + objective.masked_mse(out.audio, objective.velocity_target(a0, a_noise).to(dev), a_generated)
        return loss, float(sigma.mean())

    def _audio_inputs(self, items, inputs: DenoiserInput):
        """Audio draws its own sigma from its own token count (ltx-trainer's flexible strategy)."""
        if any(it.audio_latents is None for it in items):
            missing = next(it.sample_id for it in items if it.audio_latents is None)
            raise ValueError(f"audio training is on but sample {missing} has no audio latents: precompute with "
                             "audio enabled, or turn train_audio off")
        gen, dev = self.generator, self.device
        a0 = torch.stack([it.audio_latents for it in items]).float()
        b, t = a0.shape[0], a0.shape[2]
        a_sigma = self.sampler.sample(b, t, gen)
        a_noise = torch.randn(a0.shape, generator=gen)
        a_token_sigma = a_sigma[:, None].expand(b, t)
        inputs.audio = objective.noisy_input(a0, a_noise, a_token_sigma).to(dev)
        inputs.audio_timesteps = a_token_sigma.to(dev)
        inputs.audio_sigma = a_sigma.to(dev)
        return a0.to(dev), a_noise.to(dev), torch.ones(b, t, dtype=torch.bool, device=dev)

    # -- checkpoints and output ----------------------------------------------------------------------------------

    def _cursor(self) -> tuple:
        return self.epoch, self.position, self._batches

    def _restore_cursor(self, cursor: tuple) -> None:
        self.epoch, self.position, self._batches = cursor

    def _checkpoint(self) -> Path:
        state = {
            "lora": self.lora.state(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "position": self.position,
            "losses": list(self.losses),
            "loss_ema": self.loss_ema,
            "config": dataclasses.asdict(self.cfg),
            "data_fingerprint": self.data.fingerprint(),
            "lr_changes": self.lr_changes,
        }
        path = checkpoint_path(self.checkpoint_dir, self.step)
        if self.parallel.is_writer:
            save_checkpoint(self.checkpoint_dir, self.step, state, write_lora=self.save_lora)
            prune_checkpoints(self.checkpoint_dir, self.cfg.keep_checkpoints)
        self.parallel.barrier()
        return path

    def metadata(self, step: int | None = None) -> dict:
        return lora_metadata(
            base_model_version=self.denoiser.base_model_version, rank=self.cfg.rank, alpha=self.cfg.alpha,
            targets=self.cfg.targets, modules=len(self.lora.names), trigger=self.cfg.trigger,
            steps=self.step if step is None else step, recipe=self.cfg.recipe,
            dataset_fingerprint=self.data.fingerprint(), buckets=self.buckets,
            extra={"loss_ema": f"{self.loss_ema:.6g}" if self.loss_ema is not None else "",
                   "fps": json.dumps(self.frame_rates), "learning_rate": f"{self.cfg.learning_rate:g}",
                   **({"learning_rate_changes": json.dumps(self.lr_changes)} if self.lr_changes else {})})

    def save_lora(self, path: str | Path, step: int | None = None, dtype=torch.bfloat16) -> dict:
        return save_comfy_lora(path, self.lora.effective_weights(), self.metadata(step), dtype=dtype)

    def _emit(self, kind: str, **fields) -> None:
        self.on_event(TrainEvent(kind=kind, step=self.step, total_steps=self.cfg.steps, **fields))
