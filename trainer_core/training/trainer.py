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

from . import learning_check, objective, strategies
from .checkpoints import checkpoint_path, load_checkpoint, load_resumable, prune_checkpoints, save_checkpoint
from .config import TrainConfig
from .denoiser import Denoiser
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
    learning: dict | None = None
    """On "done": the "did it learn?" check's fields (``LearningCheck.fields``)."""


@dataclasses.dataclass
class TrainResult:
    lora: LoraSet
    steps_done: int
    losses: list[float]
    checkpoints: list[str]
    stopped: bool
    """True when ``should_stop`` ended the run early; the last checkpoint resumes it."""
    learning: learning_check.LearningCheck | None = None
    """Did it learn (trigger vs no trigger on the run's own samples)? None when stopped or not measurable."""


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
                 parallel: Parallel | None = None, dataset_fingerprint: str = ""):
        self.denoiser = denoiser
        self.cfg = config.validate()
        # The strategy may leave samples out (an audio-video run excluding silent clips); ``excluded`` lists them.
        self.data, self.excluded = strategies.select_data(self.cfg, data)
        data = self.data
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.on_event = on_event or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.buckets = tuple(buckets)
        self.parallel = parallel or Parallel()
        self.parallel.check(self.cfg.gradient_accumulation)
        # The run card names the dataset as the Dataset Loader shows it; the cache's own identity stays alongside.
        self.dataset_fingerprint = dataset_fingerprint
        if len(data) == 0:
            raise ValueError("the training data is empty: precompute at least one sample first")
        targets = select_targets(denoiser.lora_targets(), self.cfg.targets)
        # Offloaded (streamed) layers keep their weights elsewhere, so the compute device is given, not guessed.
        self.device = torch.device(device) if device is not None else next(iter(targets.values())).weight.device
        self.lora = LoraSet(targets, self.cfg.rank, self.cfg.alpha, seed=self.cfg.seed).to(self.device)
        self.strategy = strategies.for_run(self.cfg, data)
        self._step_context = strategies.StepContext(
            self.cfg, torch.Generator().manual_seed(self.cfg.seed),
            objective.SigmaSampler(uniform_prob=self.cfg.sigma_uniform_prob), data.empty_context(), self.device)
        self.generator = self._step_context.generator
        self.optimizer = self._make_optimizer()
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
        self.learning: learning_check.LearningCheck | None = None
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
        message = self._check_learning()
        if self.learning is not None and checkpoints and self.parallel.is_writer:
            # The final LoRA file carries the verdict in its run card.
            self.save_lora(Path(checkpoints[-1]).with_suffix(".safetensors"))
        self._emit("done", loss=self.losses[-1] if self.losses else None, loss_ema=self.loss_ema, message=message,
                   learning=self.learning.fields() if self.learning is not None else None)
        return TrainResult(self.lora, self.step, self.losses, checkpoints, stopped=False, learning=self.learning)

    def _check_learning(self) -> str | None:
        """Runs ``learning_check`` on the run's samples; a failure there never costs the trained LoRA."""
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.mixed_precision == "bf16"):
                self.learning = learning_check.check_training_data(self.denoiser, self.lora, self.data,
                                                                   self.cfg.trigger, self.device,
                                                                   batch=self.cfg.batch_size)
        except (RuntimeError, ValueError) as exc:
            return f"Did it learn? not checked: {exc}"
        return self.learning.line() if self.learning is not None else None

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
        """The strategy builds the step (what is noised, what conditions, where the loss counts); the loop runs it."""
        items = [self.data.item(i) for i in indices]
        batch = self.strategy.prepare(items, self._step_context)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.mixed_precision == "bf16"):
            out = self.denoiser(batch.inputs)
        return self.strategy.loss(out, batch), float(batch.sigma.mean())

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
            dataset_fingerprint=self.dataset_fingerprint or self.data.fingerprint(), buckets=self.buckets,
            extra={"loss_ema": f"{self.loss_ema:.6g}" if self.loss_ema is not None else "",
                   "fps": json.dumps(self.frame_rates), "latent_cache_fingerprint": self.data.fingerprint(),
                   "learning_rate": f"{self.cfg.learning_rate:g}", "lr_schedule": self.cfg.schedule,
                   "lr_warmup_steps": str(self.cfg.warmup_steps),
                   **({"learning_rate_changes": json.dumps(self.lr_changes)} if self.lr_changes else {}),
                   "strategy": self.strategy.name, **self.strategy.metadata(),
                   **({"learning_check": json.dumps(self.learning.fields())} if self.learning is not None else {})})

    def save_lora(self, path: str | Path, step: int | None = None, dtype=torch.bfloat16) -> dict:
        return save_comfy_lora(path, self.lora.effective_weights(), self.metadata(step), dtype=dtype)

    def _emit(self, kind: str, **fields) -> None:
        self.on_event(TrainEvent(kind=kind, step=self.step, total_steps=self.cfg.steps, **fields))
