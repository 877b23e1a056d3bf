"""Training settings and the recipes that fill them.

Recipe defaults follow the LTX-2.3 retraining guide (shared/reference): rank 32, alpha 32, lr 1e-4, 1500 steps,
batch 1, gradient checkpointing, bf16, checkpoints every 250 steps, caption dropout 0.05.
"""

from __future__ import annotations

import dataclasses
import math

SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("adamw", "adamw8bit")
PRECISIONS = ("bf16", "no")
STRATEGIES = ("auto", "text_to_video", "ic", "audio_video")
SILENT_CLIPS = ("video_only", "exclude")


@dataclasses.dataclass
class TrainConfig:
    recipe: str = "character"
    strategy: str = "auto"
    """What a step trains (``training/strategies``): "auto" trains IC when every sample has a reference video,
    text-to-video otherwise; "text_to_video" ignores references; "ic" requires them."""
    steps: int = 1500
    rank: int = 32
    alpha: float = 32.0
    learning_rate: float = 1e-4
    targets: tuple[str, ...] = ("video_attn",)
    batch_size: int = 1
    gradient_accumulation: int = 1
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    schedule: str = "linear"
    """constant; linear (to 0.1x at the last step, ltx-trainer's default); cosine (to 0)."""
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "bf16"
    gradient_checkpointing: bool = True
    caption_dropout: float = 0.05
    first_frame_conditioning: float = 0.0
    """Probability that latent frame 0 is given clean (image-to-video conditioning) and excluded from the loss."""
    train_audio: bool = False
    silent_clips: str = "video_only"
    """Audio-video runs: clips without a sound track train video-only ("video_only") or are left out ("exclude")."""
    sigma_uniform_prob: float = 0.1
    seed: int = 42
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    """Keep only the newest N checkpoints (0 keeps all)."""
    loss_ema_beta: float = 0.95
    trigger: str = ""

    def validate(self) -> "TrainConfig":
        def need(ok, msg):
            if not ok:
                raise ValueError(msg)
        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        need(self.rank >= 1, f"rank must be >= 1, got {self.rank}")
        need(self.alpha > 0, f"alpha must be > 0, got {self.alpha}")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(self.batch_size >= 1 and self.gradient_accumulation >= 1, "batch_size and gradient_accumulation must be >= 1")
        need(self.schedule in SCHEDULES, f"schedule {self.schedule!r} is not one of {SCHEDULES}")
        need(self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        need(self.strategy in STRATEGIES, f"strategy {self.strategy!r} is not one of {STRATEGIES}")
        need(self.strategy != "audio_video" or self.train_audio,
             "the audio_video strategy trains sound: turn train_audio on (or choose another strategy)")
        need(self.silent_clips in SILENT_CLIPS, f"silent_clips {self.silent_clips!r} is not one of {SILENT_CLIPS}")
        need(self.mixed_precision in PRECISIONS, f"mixed_precision {self.mixed_precision!r} is not one of {PRECISIONS}")
        need(0 <= self.caption_dropout < 1, f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        need(0 <= self.first_frame_conditioning <= 1, "first_frame_conditioning must be in [0, 1]")
        need(0 <= self.warmup_steps < self.steps, f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        need(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        need(self.keep_checkpoints >= 0, "keep_checkpoints must be >= 0")
        need(len(self.targets) > 0, "targets must name at least one module pattern")
        return self

    def lr_at(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.steps - 1 - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.schedule == "linear":
            factor = 1.0 - 0.9 * progress
        elif self.schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            factor = 1.0
        return self.learning_rate * factor

    # Settings that may differ between an interrupted run and its resume. The learning rate may change too (the
    # recovery from a NaN loss); the trainer records each change in the LoRA's run card.
    RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "learning_rate")

    def resume_mismatches(self, saved: dict) -> list[str]:
        mine = dataclasses.asdict(self)
        # A setting added after the checkpoint was written had its default then.
        saved = {**dataclasses.asdict(TrainConfig()), **saved}
        return [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in mine.items()
                if k not in self.RESUMABLE_CHANGES and _norm(saved.get(k)) != _norm(v)]


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v


RECIPES: dict[str, dict] = {
    # Identity: attention only keeps the LoRA from restyling everything around the subject.
    "character": dict(targets=("video_attn",)),
    # Looks need more capacity than identity, and 2.3 learns style slowly: add the video feed-forward.
    "style": dict(targets=("video_attn", "video_ff")),
    # Motion is learned from how frames evolve: half the time the first frame is given, as in image-to-video use.
    "motion": dict(targets=("video_attn", "video_ff"), first_frame_conditioning=0.5),
    # IC-LoRA: ltx-trainer's v2v_ic_lora (video attention + feed-forward, lr 2e-4, first frame 0.2, reference always
    # on) with its 3000 steps scaled to 30-50 pairs: 2000 steps is still 40-65 passes over the pairs.
    "ic": dict(strategy="ic", targets=("video_attn", "video_ff"), learning_rate=2e-4, steps=2000,
               first_frame_conditioning=0.2),
    # A voice or a sound tied to a subject, as ltx-trainer's t2v_lora config: video and audio both generated,
    # q/k/v/out of every attention (video, audio, and both audio<->video directions), rank/alpha 32, lr 1e-4,
    # 2000 steps, no first-frame conditioning. Feed-forward and gates stay untrained.
    "audio_video": dict(targets=("video_attn", "audio_attn", "av_cross_attn"), strategy="audio_video",
                        train_audio=True, steps=2000, first_frame_conditioning=0.0),
}


def recipe_config(recipe: str, **overrides) -> TrainConfig:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}")
    return TrainConfig(recipe=recipe, **{**RECIPES[recipe], **overrides}).validate()
