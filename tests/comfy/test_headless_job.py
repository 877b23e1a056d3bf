"""The LoRA Trainer's "export job" and the headless entry point (``python -m <pack> train JOB``, ``torchrun``) on a
tiny LTX-2.3 checkpoint, on CPU with the gloo backend: one process trains what the graph would; two processes (DDP
and FSDP2) at the same global batch end with the same losses and LoRA; a two-process run stopped half-way and
resumed on one process ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from comfy_harness import PACK_DIR_NAME
from safetensors.torch import load_file
from test_lora_trainer_node import _cache

TRAIN = "LTX23Trainer_LoraTrainer"
STEPS = 4


@pytest.fixture(scope="module")
def exported(run_node, comfy_pack, comfy_env, tiny_ltx23_ckpt, tmp_path_factory):
    model, _, vae = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    cache = _cache(run_node, tmp_path_factory.mktemp("headless"), model, vae, "2.3")
    outputs = run_node(TRAIN, model=model, latent_cache=cache, recipe="style", run_name="exported", steps=STEPS,
                       rank=4, alpha=4.0, learning_rate=1e-2, trigger_word="sks", resume=False, seed=5,
                       caption_dropout=0.2, checkpoint_every=2, keep_checkpoints=0, mixed_precision="no",
                       schedule="constant", gradient_accumulation=2, run_on="export job", gpus=2)
    return outputs, comfy_env.path("output", "ltx23_trainer", "runs", "exported", "job.json")


def _job(src, folder, **changes):
    data = json.loads(src.read_text())
    data["run_dir"] = str(folder)
    data["config"].update(changes.pop("config", {}))
    data.update(changes)
    path = folder.parent / f"{folder.name}.json"
    path.write_text(json.dumps(data))
    return path


def _run(comfy_env, job, processes=1, *extra):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    env = {**os.environ, "COMFYUI_ROOT": str(comfy_env.root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", PACK_DIR_NAME, "train", str(job), *extra], cwd=comfy_env.path("custom_nodes"),
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done.stdout + done.stderr


def _result(folder, step=STEPS):
    ckpt = torch.load(folder / "checkpoints" / f"step_{step:06d}.ckpt", weights_only=False)
    return ckpt["losses"], load_file(str(folder / "checkpoints" / f"step_{step:06d}.safetensors"))


def _assert_same(a, b):
    (losses_a, lora_a), (losses_b, lora_b) = a, b
    torch.testing.assert_close(torch.tensor(losses_a), torch.tensor(losses_b), rtol=1e-5, atol=1e-6)
    assert lora_a.keys() == lora_b.keys()
    for key in lora_a:
        torch.testing.assert_close(lora_a[key].float(), lora_b[key].float(), rtol=2e-2, atol=1e-4, msg=key)


def test_export_writes_a_job_and_the_command_and_trains_nothing(exported):
    (lora, model, loss, report), job = exported
    data = json.loads(job.read_text())
    assert data["model_loader"] == "checkpoint" and data["model_path"].endswith(".safetensors")
    assert data["config"]["gradient_accumulation"] == 2 and data["config"]["steps"] == STEPS
    assert f"torchrun --standalone --nproc-per-node 2 -m {PACK_DIR_NAME} train {job}" in report
    assert type(lora).__name__ == "ExecutionBlocker" and type(model).__name__ == "ExecutionBlocker"
    assert not (job.parent / "checkpoints").exists()


def test_one_two_ddp_and_two_fsdp_processes_train_the_same_lora(exported, comfy_env, tmp_path):
    _, job = exported
    runs = {}
    for name, processes, mode in (("one", 1, "auto"), ("ddp", 2, "ddp"), ("fsdp", 2, "fsdp")):
        folder = tmp_path / name
        out = _run(comfy_env, _job(job, folder), processes, "--parallel", mode)
        assert f"step_{STEPS:06d}.safetensors" in out
        assert f"on {processes} process(es), mode {'single' if processes == 1 else mode}" in out, out[-3000:]
        runs[name] = _result(folder)
    losses = runs["one"][0]
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
    _assert_same(runs["one"], runs["ddp"])
    _assert_same(runs["one"], runs["fsdp"])
    events = [json.loads(line) for line in (tmp_path / "ddp" / "events.jsonl").read_text().splitlines()]
    assert events[-1]["state"] == "done" and len(events[-1]["losses"]) == STEPS


def test_two_processes_stopped_then_resumed_on_one_end_like_an_uninterrupted_run(exported, comfy_env, tmp_path):
    _, job = exported
    whole, split = tmp_path / "whole", tmp_path / "split"
    _run(comfy_env, _job(job, whole))
    _run(comfy_env, _job(job, split, config={"steps": STEPS // 2}), 2, "--parallel", "ddp")
    assert not (split / "checkpoints" / f"step_{STEPS:06d}.ckpt").exists()
    _run(comfy_env, _job(job, split, resume=True))
    _assert_same(_result(whole), _result(split))
