"""Training job files: a round trip keeps every setting, and broken or foreign files are refused with the fix."""

import json

import pytest

from trainer_core.training.config import recipe_config
from trainer_core.training.job import JobError, TrainingJob, command, read_job, write_job
from trainer_core.training.parallel import Parallel, ParallelError


def _job(tmp_path, **changes):
    model = tmp_path / "ltx-2.3-22b-dev.safetensors"
    model.write_bytes(b"x")
    (tmp_path / "cache").mkdir(exist_ok=True)
    fields = dict(model_path=str(model), model_loader="checkpoint", cache_dir=str(tmp_path / "cache"),
                  run_dir=str(tmp_path / "run"), config=recipe_config("style", steps=7, gradient_accumulation=4),
                  buckets={"128x7x17x30": 3})
    fields.update(changes)
    return TrainingJob(**fields)


def test_round_trip_keeps_every_setting(tmp_path):
    job = _job(tmp_path, weight_dtype="fp8_e4m3fn", parallel="fsdp", resume=True)
    back = read_job(write_job(job, tmp_path / "job.json")).validate()
    assert back == job
    assert back.config.targets == ("video_attn", "video_ff")


def test_broken_and_foreign_files_are_refused_with_the_fix(tmp_path):
    with pytest.raises(JobError, match="does not exist; export it"):
        read_job(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(JobError, match="not readable JSON"):
        read_job(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(JobError, match="is not a ltx23-trainer-job/1 job file"):
        read_job(tmp_path / "other.json")
    data = json.loads(_job(tmp_path).to_json())
    data["config"]["warp_speed"] = 9
    (tmp_path / "future.json").write_text(json.dumps(data))
    with pytest.raises(JobError, match="warp_speed"):
        read_job(tmp_path / "future.json")


def test_a_job_made_on_another_machine_names_the_missing_path(tmp_path):
    job = _job(tmp_path, model_path=str(tmp_path / "elsewhere.safetensors"))
    with pytest.raises(JobError, match="elsewhere.safetensors does not exist on this machine"):
        job.validate()


def test_command_runs_from_custom_nodes_with_torchrun_for_several_gpus(tmp_path):
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "ltx23_trainer"
    assert command("/r/job.json", pack, tmp_path / "ComfyUI", 1) == (
        f"cd {pack.parent} && COMFYUI_ROOT={tmp_path / 'ComfyUI'} python -m ltx23_trainer train /r/job.json")
    assert "torchrun --standalone --nproc-per-node 4 -m ltx23_trainer train" in command("/j", pack, "/c", 4)


def test_processes_share_each_steps_micro_batches_evenly():
    with pytest.raises(ParallelError, match="multiple of 2"):
        Parallel(rank=0, world_size=2).check(3)
    owners = [[k for k in range(6) if Parallel(rank=r, world_size=3).owns(k)] for r in range(3)]
    assert owners == [[0, 3], [1, 4], [2, 5]]
