"""Save Comfy LoRA, LoRA Inspector, base-checked LoRA Loader and Validation Sweep in-process on tiny LTX-2.3 / LTX-2.0
checkpoints: a LoRA trained by the pack's own nodes and a foreign ltx-trainer file both sweep through ComfyUI's
sampler, scores respond as they should, saved files load in stock LoraLoaderModelOnly without a warning, and an
LTX-2 LoRA on LTX-2.3 is stopped."""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil

import av
import pytest
import tiny_checkpoint as tc
import torch
from comfy_harness import FakeClip
from safetensors import safe_open
from safetensors.torch import save_file

SAVE, INSPECT, LOAD, SWEEP = ("LTX23Trainer_SaveComfyLora", "LTX23Trainer_LoraInspector", "LTX23Trainer_LoraLoader",
                              "LTX23Trainer_ValidationSweep")
TRIGGER = "sks"
TRIGGER_PROMPT = "sks a red ball bouncing"
OFF_TOPIC = "a quiet forest"
ATTN = tuple(f"transformer_blocks.{b}.{a}.{p}" for b in range(tc.NUM_LAYERS) for a in ("attn1", "attn2")
             for p in ("to_q", "to_k", "to_v", "to_out.0"))
# Cheap sweep: 2 seeds x (trigger, no-trigger, off-topic) rows x 3 strengths at 64x64x9, 2 sampler steps.
SWEEP_ARGS = dict(preset="custom", trigger=TRIGGER, trigger_prompts=TRIGGER_PROMPT, off_topic_prompts=OFF_TOPIC,
                  strengths="0, 0.5, 1.0", seeds=2, first_seed=0, steps=2, width=64, height=64, frames=9, fps=24.0)


@pytest.fixture(scope="module")
def pack(comfy_pack):
    def load(sub):
        return importlib.import_module(f"{comfy_pack.module.__name__}.{sub}")

    return load


@pytest.fixture(scope="module")
def ltx23(run_node, tiny_ltx23_ckpt):
    model, _, vae = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx23_ckpt)
    return model, vae


@pytest.fixture(scope="module")
def ltx20(run_node, tiny_ltx20_ckpt):
    model, _, _ = run_node("CheckpointLoaderSimple", ckpt_name=tiny_ltx20_ckpt)
    return model


@pytest.fixture(scope="module")
def trained(run_node, comfy_pack, ltx23, tmp_path_factory):
    """A LoRA trained by the pack's nodes, and the latent cache (with the sweep's prompts) it was trained from.

    Audio and cross-modal adapters are targeted in a video-only run, so they stay zero, as they do for users."""
    from trainer_core.data.sample_clips import write_sample_dataset

    model, vae = ltx23
    tmp = tmp_path_factory.mktemp("trained")
    write_sample_dataset(tmp / "dataset", clips=2)
    dataset, _ = run_node("LTX23Trainer_DatasetLoader", folder=str(tmp / "dataset"), recursive=False,
                          trigger_word=TRIGGER, trigger_position="start", strict=False)
    samples, _, _ = run_node("LTX23Trainer_FrameTrimmer", dataset=dataset, buckets="64x64x9", target_fps=0.0,
                             window="start", max_windows=1, no_upscale=False, seed=0)
    prompts = "\n".join([TRIGGER_PROMPT, "a red ball bouncing", OFF_TOPIC])
    cache, _, _ = run_node("LTX23Trainer_LatentPrecompute", samples=samples, vae=vae,
                           clip=FakeClip(tc.raw_text_width("2.3")), model=model, cache_folder=str(tmp / "cache"),
                           validation_prompts=prompts, decode_check=0)
    lora, _, _, _ = run_node("LTX23Trainer_LoraTrainer", model=model, latent_cache=cache, recipe="style",
                             run_name="sweep-test", steps=12, rank=4, alpha=4.0, learning_rate=5e-2,
                             trigger_word=TRIGGER, resume=False, seed=0, caption_dropout=0.0, checkpoint_every=12,
                             keep_checkpoints=0, mixed_precision="no",
                             targets="video_attn, audio_attn, av_cross_attn")
    return lora, cache


def _random_weights(model, names, seed=1, scale=0.3, zero=()):
    gen = torch.Generator().manual_seed(seed)
    dit = model.model.diffusion_model
    weights = {}
    for name in names:
        out_f, in_f = dit.get_submodule(name).weight.shape
        B = torch.zeros(out_f, 2) if name in zero else torch.randn(out_f, 2, generator=gen) * scale
        weights[name] = (torch.randn(2, in_f, generator=gen) * scale, B)
    return weights


def _lora(pack, weights, metadata=None):
    lora_file = pack("trainer_core.output.lora_file")
    return lora_file.LoraFile(weights=weights, metadata=dict(metadata or {}), source_format="ltx23-trainer", rank=2)


def _ltx_trainer_file(path, weights):
    """What ltx-trainer writes: PEFT A/B with the ``diffusion_model.`` prefix, bf16, no alpha, no metadata."""
    save_file({f"diffusion_model.{n}.lora_{ab}.weight": t.to(torch.bfloat16).contiguous()
               for n, (A, B) in weights.items() for ab, t in (("A", A), ("B", B))}, str(path))


def _loras_dir(comfy_env):
    return comfy_env.path("models", "loras")


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- Save --------------------------------------------------------------------------------------------------------

def test_save_numbers_files_writes_a_run_card_and_loads_without_warnings(pack, run_node, ltx23, trained, comfy_env,
                                                                      caplog):
    import folder_paths

    model, _ = ltx23
    lora, _ = trained
    (name1, summary) = run_node(SAVE, lora=lora, filename_prefix="ltx23/card_test", model=model)
    (name2, _) = run_node(SAVE, lora=lora, filename_prefix="ltx23/card_test", model=model, dtype="fp32")
    assert (name1, name2) == ("ltx23/card_test_00001.safetensors", "ltx23/card_test_00002.safetensors")
    assert {name1, name2} <= set(folder_paths.get_filename_list("loras")), "LoraLoader must list new files at once"
    assert not [f for f in os.listdir(_loras_dir(comfy_env) / "ltx23") if f.startswith(".")], "staging file left"

    with safe_open(str(_loras_dir(comfy_env) / name1), "pt") as fh:
        meta = fh.metadata()
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys() if not k.endswith(".alpha")}
    assert dtypes == {torch.bfloat16}
    for key in ("base_model_family", "base_model_version", "base_checkpoint", "lora_rank", "lora_targets",
                "trigger_word", "training_steps", "resolution_buckets", "dataset_fingerprint", "recipe",
                "loss_at_save", "pack_version"):
        assert meta.get(key), key
    assert meta["base_model_version"] == "ltx-2.3" and meta["base_checkpoint"].startswith("tiny-ltx-2.3")
    assert meta["trigger_word"] == TRIGGER and meta["branches"] == "video"
    # A video-only run leaves the audio and cross-modal adapters at zero: dropped, about half the modules.
    kept = int(meta["lora_modules"])
    assert json.loads(meta["dropped_modules"])["untrained"] > 0
    assert kept < len(lora.weights)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        (patched,) = run_node("LoraLoaderModelOnly", model=model, lora_name=name1, strength_model=1.0)
    assert not _warnings(caplog), _warnings(caplog)
    assert len(set(patched.patches) - set(model.patches)) == kept
    assert "Base: LTX-2.3 (22B)" in summary


def test_save_can_drop_the_audio_branch_and_refuses_another_base(pack, run_node, ltx23, ltx20, comfy_env):
    model, _ = ltx23
    names = ATTN + ("transformer_blocks.0.audio_attn1.to_q", "transformer_blocks.0.audio_to_video_attn.to_k")
    lora = _lora(pack, _random_weights(model, names), {"base_model_version": "ltx-2.3"})
    (name, summary) = run_node(SAVE, lora=lora, filename_prefix="audio_test", keep_audio=False)
    with safe_open(str(_loras_dir(comfy_env) / name), "pt") as fh:
        assert not [k for k in fh.keys() if "audio" in k]
        assert fh.metadata()["branches"] == "video"
    assert "2 audio-branch dropped" in summary
    with pytest.raises(ValueError, match="BASE MODEL MISMATCH"):
        run_node(SAVE, lora=lora, filename_prefix="wrong_base", model=ltx20)


# -- Inspector and Loader ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lora_files(pack, ltx23, comfy_env):
    """Files in the loras folder: ours for 2.3 and 2.0, ltx-trainer's, and key-only LTX-2 / LTX-2.3 ones."""
    model, _ = ltx23
    lora_file = pack("trainer_core.output.lora_file")
    folder = _loras_dir(comfy_env)
    weights = _random_weights(model, ATTN)
    lora_file.save_comfy_lora(folder / "ours-23.safetensors", weights,
                              {"pack": lora_file.PACK_NAME, "base_model_version": "ltx-2.3"})
    lora_file.save_comfy_lora(folder / "ours-20.safetensors", weights,
                              {"pack": lora_file.PACK_NAME, "base_model_version": "ltx-2.0"})
    _ltx_trainer_file(folder / "ltx-trainer.safetensors", weights)
    gated = dict(weights, **_random_weights(model, ["transformer_blocks.0.attn1.to_gate_logits"]))
    _ltx_trainer_file(folder / "gated-23.safetensors", gated)
    # LTX-2's DiT still has caption_projection (tiny: caption_channels -> inner dim); 2.3 moved it out.
    dim = model.model.diffusion_model.inner_dim
    caption = dict(weights, **{"caption_projection.linear_1": (torch.randn(2, tc.CAPTION_CHANNELS) * 0.1,
                                                               torch.randn(dim, 2) * 0.1)})
    _ltx_trainer_file(folder / "caption-20.safetensors", caption)
    return weights


@pytest.mark.parametrize("name, base, status", [
    ("ours-23.safetensors", "ltx-2.3", "match"),
    ("ours-20.safetensors", "ltx-2.0", "mismatch"),
    ("ltx-trainer.safetensors", "unknown", "unknown"),
    ("gated-23.safetensors", "ltx-2.3", "match"),
    ("caption-20.safetensors", "ltx-2.0", "mismatch"),
])
def test_inspector_tells_the_base(run_node, ltx23, lora_files, name, base, status):
    model, _ = ltx23
    report, version, compat = run_node(INSPECT, lora_name=name, model=model)
    assert (version, compat) == (base, status), report
    if status == "mismatch":
        assert "BASE MODEL MISMATCH" in report and "retrain" in report


def test_inspector_without_model_and_on_ltx20(run_node, ltx20, lora_files):
    report, version, compat = run_node(INSPECT, lora_name="ltx-trainer.safetensors")
    assert (version, compat) == ("unknown", "no model")
    assert "cannot tell which" in report and "Metadata: none" in report
    # Gated attention exists only in 2.3: on a 2.0 model the module is missing, a certain mismatch.
    report, version, compat = run_node(INSPECT, lora_name="gated-23.safetensors", model=ltx20)
    assert (version, compat) == ("ltx-2.3", "mismatch")
    assert "do not exist in the model" in report


def test_loader_stops_an_ltx2_lora_on_ltx23(run_node, ltx23, lora_files, caplog):
    model, _ = ltx23
    with pytest.raises(ValueError, match=r"BASE MODEL MISMATCH.*LTX-2 \(19B\).*allow_base_mismatch"):
        run_node(LOAD, model=model, lora_name="ours-20.safetensors", strength=1.0)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        patched, report = run_node(LOAD, model=model, lora_name="ours-20.safetensors", strength=1.0,
                                   allow_base_mismatch=True)
    assert any("BASE MODEL MISMATCH" in m for m in _warnings(caplog))
    assert len(patched.patches) == len(ATTN)


def test_loader_applies_like_the_stock_loader(run_node, ltx23, lora_files, caplog):
    model, _ = ltx23
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ours, report = run_node(LOAD, model=model, lora_name="ours-23.safetensors", strength=0.7)
        (stock,) = run_node("LoraLoaderModelOnly", model=model, lora_name="ours-23.safetensors", strength_model=0.7)
    assert not _warnings(caplog)
    assert set(ours.patches) == set(stock.patches) == {f"diffusion_model.{n}.weight" for n in ATTN}
    inputs = tc.build_inputs(model)
    torch.testing.assert_close(tc.dit_forward(ours, inputs)[0], tc.dit_forward(stock, inputs)[0])
    assert run_node(LOAD, model=model, lora_name="ours-23.safetensors", strength=0.0)[0] is model
    # Foreign files whose base cannot be told load, with a warning that says so.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_node(LOAD, model=model, lora_name="ltx-trainer.safetensors", strength=1.0)
    assert any("cannot be told" in m for m in _warnings(caplog))


# -- Validation Sweep --------------------------------------------------------------------------------------------

def _sweep(run_node, model, vae, **inputs):
    result, recommended, report, grid, _ = run_node(SWEEP, model=model, vae=vae, **{**SWEEP_ARGS, **inputs})
    return result, recommended, report, grid


def _effects(result):
    return [s["trigger_effect"] for s in result["scores"]["strengths"]]


def test_sweep_of_a_pack_trained_lora_from_the_cache(pack, run_node, ltx23, trained, comfy_env):
    model, vae = ltx23
    lora, cache = trained
    result, recommended, report, grid = _sweep(run_node, model, vae, lora=lora, cache=cache)
    effects = _effects(result)
    # Already at half strength above the "changes nothing" threshold (~2x on this tiny model).
    assert pack("trainer_core.output.sweep_scores").NO_EFFECT < effects[0] < effects[1], report
    assert "CHANGES NOTHING" not in report
    # The cache's trigger clips are the reference. This random-weight model cannot learn the clips in a few steps
    # (tests/test_learning_bed.py has one that can), so the LoRA moves outputs without moving them toward the
    # data: no strength is recommended, and the report says why.
    scores = result["scores"]
    assert scores["reference"] == "2 cached training clips with the trigger 'sks'"
    assert all(isinstance(s["efficacy"], float) and s["efficacy"] < 0.05 for s in scores["strengths"]), report
    assert recommended == 0.0 and result["recommended"] is None
    assert "DOES NOT MOVE THE TRIGGER PROMPTS TOWARD ITS TRAINING DATA" in report and "Efficacy:" in report
    # Grid: header + 6 rows (3 groups x 2 seeds) of 64 px, label column + 3 strengths; 9 frames.
    assert grid.shape[0] == 1 and grid.shape[1] >= 6 * 64 and grid.shape[2] >= 3 * 64
    with av.open(result["grid"]) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (grid.shape[2], grid.shape[1])
        assert sum(1 for _ in container.decode(stream)) == 9
    clips = os.listdir(result["grid"].replace("_grid.mp4", "_clips"))
    assert len(clips) == 6 * 3
    assert os.path.exists(result["grid"].replace("_grid.mp4", "_scores.json"))
    # The scores travel into the saved file's run card; no recommendation is written when there is none.
    name, summary = run_node(SAVE, lora=lora, filename_prefix="swept", model=model, sweep=result)
    with safe_open(str(_loras_dir(comfy_env) / name), "pt") as fh:
        meta = fh.metadata()
    assert "recommended_strength" not in meta
    card = json.loads(meta["validation_sweep"])
    assert card["recommended"] is None and card["reference"] == scores["reference"]
    assert [s["efficacy"] for s in card["strengths"]] == [s["efficacy"] for s in scores["strengths"]]


def test_sweep_scores_respond_to_the_lora(pack, run_node, ltx23, lora_files, caplog):
    """A zero LoRA scores exactly no effect (and says so loudly); a non-zero one grows with strength; a foreign
    ltx-trainer file sweeps by name; the CLIP path (unprocessed conditioning) works."""
    model, vae = ltx23
    clip = FakeClip(tc.raw_text_width("2.3"))
    zero = _lora(pack, _random_weights(model, ATTN, zero=ATTN), {"base_model_version": "ltx-2.3"})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result, recommended, report, _ = _sweep(run_node, model, vae, lora=zero, clip=clip, save_clips=False,
                                                strengths="0, 0.5, 1", mode="distilled")
    assert _effects(result) == [0.0, 0.0] and recommended == 0.0 and result["recommended"] is None
    assert "THIS LORA CHANGES NOTHING" in report
    assert any("CHANGES NOTHING" in m for m in _warnings(caplog))

    result, recommended, report, _ = _sweep(run_node, model, vae, lora_name="ltx-trainer.safetensors", clip=clip,
                                            strengths="0, 0.25, 1.0", save_clips=False)
    effects = _effects(result)
    assert 0 < effects[0] < effects[1], report
    assert "cannot be told" in report
    for s in result["scores"]["strengths"]:
        assert s["bleed_no_trigger"] > 0 and s["bleed_off_topic"] > 0
        assert s["seed_consistency"] is not None and -1 <= s["seed_consistency"] <= 1


def test_sweep_records_its_result_on_the_file_and_the_inspector_shows_it(run_node, ltx23, lora_files, comfy_env):
    """One selector: the sweep picks the file, writes the recommendation into its run card (this pack's files
    only) and hands the LoRA to the Inspector, whose report then shows it. The quick preset is 18 small cells."""
    model, vae = ltx23
    folder = _loras_dir(comfy_env)
    shutil.copy(folder / "ours-23.safetensors", folder / "swept-23.safetensors")
    clip = FakeClip(tc.raw_text_width("2.3"))
    args = {k: v for k, v in SWEEP_ARGS.items() if k not in ("preset", "strengths", "seeds")}
    run = run_node(SWEEP, model=model, vae=vae, lora_name="swept-23.safetensors", clip=clip, preset="quick",
                   **{**args, "trigger_prompts": f"{TRIGGER_PROMPT}\nsks a blue cube", "off_topic_prompts": "a\nb"})
    result, recommended, report, grid, swept = run
    assert [s["strength"] for s in result["scores"]["strengths"]] == [0.5, 1.0]  # each against strength 0
    assert len(result["seeds"]) == 2 and len(result["prompts"]["trigger"]) == 1 and result["size"] == [320, 192, 17]
    assert not os.path.exists(result["grid"].replace("_grid.mp4", "_clips"))
    with safe_open(str(folder / "swept-23.safetensors"), "pt") as fh:
        meta = fh.metadata()
    expected = "none" if result["recommended"] is None else f"{result['recommended']:g}"
    assert meta["recommended_strength"] == expected == swept.metadata["recommended_strength"]
    assert meta["pack"] and "recorded in" in report
    (payload,) = run.ui["ltx23_report"]
    assert payload["counts"][0] == ["recommended strength", expected, "error" if expected == "none" else "ok"]
    assert payload["table"]["columns"][0] == "strength" and len(payload["table"]["rows"]) == 2
    assert payload["verdict"] and run.ui["images"][0]["filename"].endswith("_grid.mp4")

    inspected = run_node(INSPECT, lora_name="none", lora=swept, model=model)
    text = inspected[0]
    assert f"recommended_strength: {expected}" in text
    (card,) = inspected.ui["ltx23_report"]
    assert ["recommended strength", expected, "error" if expected == "none" else "ok"] in card["counts"]
    assert card["verdict"].startswith("MATCH") and card["tone"] == "ok"
    # A file another tool wrote is left exactly as it was.
    before = (folder / "ltx-trainer.safetensors").read_bytes()
    *_, report, _, _ = run_node(SWEEP, model=model, vae=vae, lora_name="ltx-trainer.safetensors", clip=clip,
                                **{**SWEEP_ARGS, "seeds": 1, "strengths": "0, 1"})
    assert (folder / "ltx-trainer.safetensors").read_bytes() == before and "left unchanged" in report


def test_sweep_refuses_an_ltx2_lora_on_ltx23_and_names_missing_cache_prompts(run_node, ltx23, trained, lora_files):
    model, vae = ltx23
    _, cache = trained
    with pytest.raises(ValueError, match="BASE MODEL MISMATCH"):
        _sweep(run_node, model, vae, lora_name="ours-20.safetensors", cache=cache)
    with pytest.raises(ValueError, match="not in the latent cache(.|\n)*a cat on a sofa"):
        _sweep(run_node, model, vae, lora_name="ours-23.safetensors", cache=cache, off_topic_prompts="a cat on a sofa")


def test_sigmas_match_the_core_ltxv_scheduler(pack):
    from comfy_extras.nodes_lt import LTXVScheduler

    sweep = pack("trainer_core.output.sweep")
    for steps, tokens in ((20, 4 * 10 * 16), (3, 8), (30, 4096)):
        latent = {"samples": torch.zeros(1, 128, 4, 1, tokens // 4)}
        (core,) = LTXVScheduler.execute(steps, 2.05, 0.95, True, 0.1, latent=latent).args
        torch.testing.assert_close(sweep.ltx_sigmas(steps, tokens), core)

