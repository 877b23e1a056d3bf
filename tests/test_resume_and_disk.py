"""Recovery that can be followed (issue 11, items 5 and 6): a resume with a lower learning rate, a resume past an
unreadable newest checkpoint or from a chosen one, and a full disk (a real, small tmpfs) during precompute and
checkpoints: named path, bytes needed and free, the fix, and no checkpoint without its LoRA file."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid

import pytest
import torch
from safetensors import safe_open

from tiny import tiny_data, tiny_denoiser
from trainer_core.atomic import atomic_path
from trainer_core.cache.encoders import DiffusersVideoEncoder, StandInTextConditioner, build_tiny_vae
from trainer_core.cache.precompute import precompute
from trainer_core.data.samples import Sample
from trainer_core.diskspace import DiskFullError
from trainer_core.training.checkpoints import list_checkpoints, load_resumable
from trainer_core.training.config import recipe_config
from trainer_core.training.trainer import LoraTrainer


def _cfg(**kw):
    base = dict(steps=8, rank=4, alpha=4, learning_rate=5e-3, caption_dropout=0.3, checkpoint_every=2,
                keep_checkpoints=0, mixed_precision="no", gradient_checkpointing=False, seed=7)
    base.update(kw)
    return recipe_config("character", **base)


def test_resume_with_a_lower_learning_rate_is_recorded_in_the_run_card(tmp_path):
    d = tiny_denoiser()
    data = tiny_data(d, n=2)
    LoraTrainer(d, data, _cfg(steps=4), tmp_path).run()
    lowered = LoraTrainer(d, data, _cfg(steps=8, learning_rate=1e-3), tmp_path)
    lowered.resume(tmp_path / "checkpoints")
    assert lowered.step == 4
    assert lowered.resume_notes == ["learning rate changed at step 4: 0.005 -> 0.001 (recorded in the LoRA's run card)"]
    lowered.run()
    assert lowered.optimizer.param_groups[0]["lr"] == pytest.approx(_cfg(learning_rate=1e-3).lr_at(7))
    with safe_open(str(tmp_path / "checkpoints" / "step_000008.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["learning_rate"] == "0.001"
    assert json.loads(meta["learning_rate_changes"]) == [{"step": 4, "from": 0.005, "to": 0.001}]
    # The history survives a second resume.
    again = LoraTrainer(d, data, _cfg(steps=10, learning_rate=1e-3), tmp_path)
    again.resume(tmp_path / "checkpoints")
    assert again.lr_changes == [{"step": 4, "from": 0.005, "to": 0.001}] and again.resume_notes == []


def test_resume_falls_back_past_an_unreadable_checkpoint_or_takes_the_chosen_one(tmp_path):
    d = tiny_denoiser()
    data = tiny_data(d, n=2)
    LoraTrainer(d, data, _cfg(steps=6), tmp_path).run()
    folder = tmp_path / "checkpoints"
    newest = folder / "step_000006.ckpt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a copy cut short
    trainer = LoraTrainer(d, data, _cfg(steps=6), tmp_path)
    trainer.resume(folder)
    assert trainer.step == 4
    assert trainer.resume_notes[0].startswith("skipped step_000006.ckpt: ")
    assert trainer.resume_notes[1] == "resumed from step_000004.ckpt, the newest readable checkpoint"
    chosen = LoraTrainer(d, data, _cfg(steps=6), tmp_path)
    chosen.resume(folder, pick="2")
    assert chosen.step == 2
    assert load_resumable(folder, "step_000002.ckpt")[0]["step"] == 2
    with pytest.raises(ValueError, match="no step_000005.ckpt.*step_000002.ckpt, step_000004.ckpt"):
        load_resumable(folder, "5")
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        load_resumable(folder, "6")


@contextlib.contextmanager
def small_disk(tmp_path, size: str):
    """A real tmpfs of ``size``: writes beyond it fail with ENOSPC, as on a full disk."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs ({done.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder, leave: int) -> None:
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_full_disk_while_writing_names_the_file_the_bytes_and_the_fix(tmp_path):
    with small_disk(tmp_path, "1m") as disk:
        fill(disk, leave=64 << 10)
        target = disk / "big.bin"
        with pytest.raises(DiskFullError) as info:
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"x" * (256 << 10))
        message = str(info.value)
        assert str(target) in message and "free on that disk" in message and "Fix: free space" in message
        assert info.value.free < (64 << 10) + 4096 and info.value.needed >= 60 << 10
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no temp file left behind


def test_checkpoint_and_its_lora_land_together_or_not_at_all(tmp_path):
    d = tiny_denoiser()
    data = tiny_data(d, n=2)
    with small_disk(tmp_path, "4m") as disk:
        trainer = LoraTrainer(d, data, _cfg(steps=4), disk / "run")
        trainer.run()
        good = sorted(p.name for p in (disk / "run" / "checkpoints").iterdir())
        assert good == ["step_000002.ckpt", "step_000002.safetensors", "step_000004.ckpt", "step_000004.safetensors"]
        ckpt_bytes = os.path.getsize(disk / "run" / "checkpoints" / "step_000004.ckpt")
        # Room for the LoRA file but not for the checkpoint.
        fill(disk, leave=ckpt_bytes // 2)
        longer = LoraTrainer(d, data, _cfg(steps=6), disk / "run")
        longer.resume(disk / "run" / "checkpoints")
        with pytest.raises(DiskFullError, match=r"step_000006\.ckpt: about .* needed, .* free on that disk\. Fix"):
            longer.run()
        assert sorted(p.name for p in (disk / "run" / "checkpoints").iterdir()) == good
        (disk / "filler").unlink()
        resumed = LoraTrainer(d, data, _cfg(steps=6), disk / "run")
        resumed.resume(disk / "run" / "checkpoints")
        assert resumed.run().steps_done == 6
        assert [p.name for p in list_checkpoints(disk / "run" / "checkpoints")][-1] == "step_000006.ckpt"
        assert (disk / "run" / "checkpoints" / "step_000006.safetensors").is_file()


def test_full_disk_during_precompute_names_the_cache_file_and_keeps_finished_ones(tmp_path):
    samples = [Sample(sample_id=f"s{i}", media_path=f"/d/{i}.mp4", media_identity=str(i), kind="video",
                      caption=f"caption {i}", width=64, height=64, frames=9, fps=24.0, start_time=0.0)
               for i in range(3)]

    def frames(sample):
        return torch.rand(sample.frames, sample.height, sample.width, 3,
                          generator=torch.Generator().manual_seed(int(sample.media_identity)))

    encoder = DiffusersVideoEncoder(build_tiny_vae(seed=0), tiling="never")
    text = StandInTextConditioner(width=24, length=2048)  # ~100 kB per caption context in bf16
    with small_disk(tmp_path, "1m") as disk:
        fill(disk, leave=300 << 10)
        with pytest.raises(DiskFullError, match=r"cache/text/[0-9a-f]+\.safetensors: about .* needed, .* free"):
            precompute(samples, str(disk / "cache"), video_encoder=encoder, text_conditioner=text,
                       frame_loader=frames)
        finished = list((disk / "cache" / "text").glob("*.safetensors"))
        assert finished and not [p for p in (disk / "cache" / "text").iterdir() if p.name.startswith(".")]
        (disk / "filler").unlink()
        report = precompute(samples, str(disk / "cache"), video_encoder=encoder, text_conditioner=text,
                            frame_loader=frames)
        assert report.reused["text"] == len(finished) and report.cache.num_samples == 3
