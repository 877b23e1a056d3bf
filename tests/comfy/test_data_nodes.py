"""Dataset Loader and Frame Trimmer as ComfyUI runs them: registered by the pack, executed by ComfyUI's executor."""

from __future__ import annotations

import json
import shutil

import pytest

LOADER = "LTX23Trainer_DatasetLoader"
TRIMMER = "LTX23Trainer_FrameTrimmer"
LOADER_DEFAULTS = dict(recursive=False, trigger_word="sks", trigger_position="start", strict=False,
                       allow_outside_root=False)
TRIMMER_DEFAULTS = dict(target_fps=0.0, window="start", max_windows=4, no_upscale=False, seed=0,
                        preview_per_bucket=2)


@pytest.fixture
def demo_folder(comfy_env):
    from trainer_core.data.sample_clips import write_sample_dataset

    folder = comfy_env.path("input", "demo_clips")
    shutil.rmtree(folder, ignore_errors=True)
    write_sample_dataset(folder)
    return folder


def test_nodes_are_registered_with_their_schema(comfy_pack):
    for node_id in (LOADER, TRIMMER):
        info = comfy_pack.nodes[node_id].GET_NODE_INFO_V1()
        assert info["category"] == "LTX-2.3 Trainer/Data"
    loader_info = comfy_pack.nodes[LOADER].GET_NODE_INFO_V1()
    assert loader_info["output"] == ["LTX23_DATASET", "STRING"]
    trimmer_info = comfy_pack.nodes[TRIMMER].GET_NODE_INFO_V1()
    assert trimmer_info["output"] == ["LTX23_SAMPLES", "IMAGE", "STRING"]
    assert trimmer_info["input"]["required"]["dataset"][0] == "LTX23_DATASET"


def test_loader_then_trimmer(comfy_env, comfy_pack, run_node, demo_folder):
    # A relative folder is read from ComfyUI's input directory.
    loaded = run_node(LOADER, folder="demo_clips", **LOADER_DEFAULTS)
    dataset, report = loaded
    assert len(dataset.usable_items()) == 4
    (shown,) = loaded.ui["ltx23_report"]
    assert shown["verdict"] == "4 usable, 0 excluded" and shown["counts"][:2] == [["usable", 4, "ok"],
                                                                                  ["excluded", 0, "info"]]
    assert shown["lines"] == [f"dataset fingerprint {dataset.fingerprint[:12]}"] and shown["text"] == report
    assert "4 items: 4 usable" in report
    report_path = report.rsplit("JSON report: ", 1)[1].strip()
    assert report_path.startswith(str(comfy_env.path("output")))
    assert json.loads(open(report_path, encoding="utf-8").read())["summary"]["usable"] == 4

    run = run_node(TRIMMER, dataset=dataset, buckets="128x96x17;128x96x25", **TRIMMER_DEFAULTS)
    samples, preview, trim_report = run
    assert len(samples.samples) == 4
    assert all(s.frames in (17, 25) and s.width == 128 and s.height == 96 for s in samples.samples)
    assert tuple(preview.shape) == (4, 256, 256, 3)
    assert "4 samples from 4 items" in trim_report
    assert len(run.ui["images"]) == 4
    (shown,) = run.ui["ltx23_report"]
    assert shown["counts"][:2] == [["samples", 4, "ok"], ["excluded", 0, "info"]]


def test_loader_fingerprint_follows_the_folder(comfy_pack, demo_folder):
    loader = comfy_pack.nodes[LOADER]
    before = loader.fingerprint_inputs(folder=str(demo_folder), recursive=False)
    assert loader.fingerprint_inputs(folder=str(demo_folder), recursive=False) == before
    (demo_folder / "demo_00.txt").write_text("a blue ball", encoding="utf-8")
    assert loader.fingerprint_inputs(folder=str(demo_folder), recursive=False) != before


def test_loader_errors_name_the_file_and_the_fix(run_node, comfy_pack, demo_folder):
    (demo_folder / "broken.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="broken.mp4: the file is empty .*turn strict mode off"):
        run_node(LOADER, folder=str(demo_folder), **{**LOADER_DEFAULTS, "strict": True})
    dataset, report = run_node(LOADER, folder=str(demo_folder), **LOADER_DEFAULTS)
    assert "EXCLUDED broken.mp4" in report and len(dataset.usable_items()) == 4
    with pytest.raises(ValueError, match="does not exist"):
        run_node(LOADER, folder="no_such_folder", **LOADER_DEFAULTS)


def test_trimmer_bucket_validation_and_empty_result(run_node, comfy_pack, demo_folder):
    trimmer = comfy_pack.nodes[TRIMMER]
    assert trimmer.validate_inputs(buckets="128x96x17") is True
    message = trimmer.validate_inputs(buckets="130x96x18")
    assert "nearest: 128 or 160" in message and "nearest: 17 or 25" in message
    dataset, _ = run_node(LOADER, folder=str(demo_folder), **LOADER_DEFAULTS)
    with pytest.raises(ValueError, match="(?s)produced no samples.*too short.*such as 128x96x17"):
        run_node(TRIMMER, dataset=dataset, buckets="128x96x49", **TRIMMER_DEFAULTS)


def test_relative_folder_cannot_leave_the_input_folder(run_node, comfy_pack, demo_folder):
    with pytest.raises(ValueError, match=r"'\.\./\.\./\.\./\.\./etc' leads outside ComfyUI's input folder"):
        run_node(LOADER, folder="../../../../etc", **LOADER_DEFAULTS)
    loader = comfy_pack.nodes[LOADER]
    assert loader.fingerprint_inputs(folder="../../../../etc").startswith("refused: ")
    # Absolute paths stay allowed.
    dataset, _ = run_node(LOADER, folder=str(demo_folder), **LOADER_DEFAULTS)
    assert len(dataset.usable_items()) == 4


def test_error_types_read_as_the_pack_not_a_file_path(comfy_pack):
    import execution

    media = comfy_pack.module.trainer_core.data.media
    disk = comfy_pack.module.trainer_core.diskspace
    assert execution.full_type_name(media.MediaError) == "ltx23_trainer.MediaError"
    assert execution.full_type_name(disk.DiskFullError) == "ltx23_trainer.DiskFullError"
