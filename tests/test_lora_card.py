"""Run-card metadata, numbered names that never overwrite, untrained/audio filtering, and base-model inference from
metadata, keys and shapes (trainer_core.output.lora_card), on real tensors and files; no ComfyUI."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open

from trainer_core.output import lora_card as lc
from trainer_core.output.lora_file import PACK_NAME, read_lora, save_comfy_lora

ATTN = [f"transformer_blocks.{b}.{a}.{p}" for b in range(2) for a in ("attn1", "attn2")
        for p in ("to_q", "to_k", "to_v", "to_out.0")]
AUDIO = ["transformer_blocks.0.audio_attn1.to_q", "transformer_blocks.1.audio_ff.net.2",
         "transformer_blocks.0.audio_to_video_attn.to_k", "transformer_blocks.1.video_to_audio_attn.to_out.0"]


def _weights(names, rank=4, width=16, zero_b=(), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {n: (torch.randn(rank, width, generator=gen),
                torch.zeros(width, rank) if n in zero_b else torch.randn(width, rank, generator=gen)) for n in names}


def test_audio_modules_are_recognised():
    assert all(lc.is_audio_module(n) for n in AUDIO)
    assert not any(lc.is_audio_module(n) for n in ATTN + ["transformer_blocks.0.ff.net.0.proj"])
    assert lc.is_audio_module("av_ca_audio_scale_shift_adaln_single.linear")


def test_filter_drops_untrained_and_optionally_audio():
    weights = _weights(ATTN + AUDIO, zero_b=AUDIO[:2])
    kept = lc.filter_weights(weights)
    assert set(kept.weights) == set(ATTN + AUDIO[2:]) and kept.dropped_untrained == tuple(AUDIO[:2])
    video = lc.filter_weights(weights, keep_audio=False)
    assert set(video.weights) == set(ATTN) and len(video.dropped_audio) == 4
    assert "4 audio-branch dropped" in video.summary()
    everything = lc.filter_weights(weights, drop_untrained=False)
    assert len(everything.weights) == len(weights)
    # A zero down matrix is just as untrained (ComfyUI's own trainer initialises that side to zero).
    down_zero = {"m": (torch.zeros(4, 16), torch.randn(16, 4))}
    with pytest.raises(ValueError, match="never trained"):
        lc.filter_weights(down_zero)


def test_run_card_completes_the_training_metadata_and_survives_a_save(tmp_path):
    weights = _weights(ATTN)
    training = {"pack": PACK_NAME, "base_model_version": "ltx-2.0", "trigger_word": "sks", "training_steps": "500",
                "loss_ema": "0.0421", "recipe": "style", "resolution_buckets": '["960x544x49"]'}
    meta = lc.run_card(training, weights=weights, base_model_version="ltx-2.3",
                       base_checkpoint="/models/checkpoints/ltx-2.3-22b-dev.safetensors", fps=24,
                       recommended_strength=0.75, sweep_scores={"recommended": 0.75}, saved_dtype="fp32")
    assert meta["base_model_version"] == "ltx-2.3", "the MODEL connected at save time wins"
    assert meta["base_checkpoint"] == "ltx-2.3-22b-dev.safetensors"
    assert (meta["fps"], meta["loss_at_save"], meta["recommended_strength"]) == ("24", "0.0421", "0.75")
    assert meta["recommended_strength_source"] == "validation sweep"
    assert json.loads(meta["lora_targets"]) == ["attn1.to_k", "attn1.to_out.0", "attn1.to_q", "attn1.to_v",
                                                "attn2.to_k", "attn2.to_out.0", "attn2.to_q", "attn2.to_v"]
    assert (meta["lora_rank"], meta["lora_modules"], meta["branches"]) == ("4", "16", "video")
    assert all(isinstance(v, str) for v in meta.values())
    save_comfy_lora(tmp_path / "x.safetensors", weights, meta)
    back = read_lora(tmp_path / "x.safetensors")
    assert back.metadata == meta and back.source_format == "ltx23-trainer"
    assert lc.infer_base(back.weights, back.metadata).version == "ltx-2.3"
    assert "recommended_strength" not in lc.run_card({}, weights=weights), "unknown values are left out"


def test_numbered_names_count_up_and_never_overwrite(tmp_path):
    assert lc.numbered_name(tmp_path, "ltx23/style") == "ltx23/style_00001.safetensors"
    names = []
    for k in range(3):
        staged = tmp_path / f"staged{k}"
        staged.write_bytes(bytes([k]))
        names.append(lc.claim_numbered(staged, tmp_path, "ltx23/style.safetensors"))
        assert not staged.exists()
    assert names == [f"ltx23/style_0000{i}.safetensors" for i in (1, 2, 3)]
    assert [(tmp_path / n).read_bytes() for n in names] == [b"\x00", b"\x01", b"\x02"]
    # A deleted file's number is not reused while a higher one exists; a name taken meanwhile is skipped.
    os.unlink(tmp_path / names[1])
    (tmp_path / "ltx23" / "style_00004.safetensors").write_bytes(b"other")
    staged = tmp_path / "s"
    staged.write_bytes(b"new")
    assert lc.claim_numbered(staged, tmp_path, "ltx23/style") == "ltx23/style_00005.safetensors"
    assert (tmp_path / "ltx23" / "style_00004.safetensors").read_bytes() == b"other"
    with pytest.raises(ValueError, match="climbs out"):
        lc.numbered_name(tmp_path, "../escape")


@pytest.mark.parametrize("text, version", [
    ("ltx-2.3", "ltx-2.3"), ("ltx-2.3-22b-dev.safetensors", "ltx-2.3"), ("LTX-2.3 (22B)", "ltx-2.3"),
    ("ltx-2-19b-dev-fp8.safetensors", "ltx-2.0"), ("ltx-2.0", "ltx-2.0"), ("LTX-2", "ltx-2.0"),
    ("ltxv-0.9", "ltxv-0.9"), ("LTX-Video 0.9.8", "ltxv-0.9"), ("ltx-2.5", "ltx-2.5"), ("flux-dev", None),
])
def test_version_names(text, version):
    assert lc.normalize_version(text) == version


def _shapes(names, out=16, width=16):
    return {n: (out, width) for n in names}


def test_base_from_our_metadata_is_authoritative():
    meta = {"pack": PACK_NAME, "base_model_version": "ltx-2.0"}
    base = lc.infer_base(_shapes(ATTN + ["transformer_blocks.0.attn1.to_gate_logits"]), meta)
    assert (base.version, base.source) == ("ltx-2.0", "metadata (this pack)")
    assert base.conflicts and "LTX-2.3" in base.conflicts[0]


def test_base_from_keys_and_widths():
    gated = lc.infer_base(_shapes(ATTN + ["transformer_blocks.3.attn2.to_gate_logits"]))
    assert (gated.version, gated.source) == ("ltx-2.3", "keys")
    assert lc.infer_base(_shapes(["prompt_adaln_single.linear"] + ATTN)).version == "ltx-2.3"
    assert lc.infer_base(_shapes(["caption_projection.linear_1"] + ATTN)).version == "ltx-2.0"
    assert lc.infer_base(_shapes(["video_embeddings_connector.transformer_1d_blocks.5.ff.net.2"])).version == "ltx-2.3"
    q = "video_embeddings_connector.transformer_1d_blocks.0.attn1.to_q"
    assert lc.infer_base({q: (3840, 3840)}).version == "ltx-2.0"
    assert lc.infer_base({q: (4096, 4096)}).version == "ltx-2.3"
    assert lc.infer_base(_shapes(ATTN, out=2048, width=2048)).version == "ltxv-0.9"
    clash = lc.infer_base(_shapes(ATTN + ["transformer_blocks.0.attn1.to_gate_logits", "caption_projection.linear_1"]))
    assert clash.version is None and clash.conflicts


def test_base_from_other_tools_metadata_and_what_cannot_be_told():
    foreign = lc.infer_base(_shapes(ATTN), {"ss_sd_model_name": "ltx-2-19b-dev.safetensors"})
    assert (foreign.version, foreign.source) == ("ltx-2.0", "metadata (other tool)")
    plain = lc.infer_base(_shapes(ATTN, 4096, 4096))
    assert plain.version is None and plain.is_ltx and plain.label == "LTX-2.x, version unknown"
    assert any("cannot tell" in e for e in plain.evidence)
    flux = lc.infer_base(_shapes(["double_blocks.0.img_attn.qkv"]))
    assert not flux.is_ltx and flux.label == "not an LTX LoRA"


def test_check_against_model():
    model = {**_shapes(ATTN), "transformer_blocks.0.attn1.to_gate_logits": (2, 16)}
    ours20 = lc.infer_base(_shapes(ATTN), {"pack": PACK_NAME, "base_model_version": "ltx-2.0"})
    mismatch = lc.check_against_model(ours20, _shapes(ATTN), model, "ltx-2.3", "a.safetensors")
    assert mismatch.is_mismatch and "retrain" in mismatch.message and "LTX-2 (19B)" in mismatch.message
    unknown = lc.check_against_model(lc.infer_base(_shapes(ATTN)), _shapes(ATTN), model, "ltx-2.3")
    assert unknown.status == "unknown" and "cannot be told" in unknown.message
    wrong = lc.check_against_model(lc.infer_base(_shapes(ATTN, 32, 32)), _shapes(ATTN, 32, 32), model, "ltx-2.3")
    assert wrong.is_mismatch and len(wrong.wrong_shape) == len(ATTN)
    missing = {**_shapes(ATTN), "transformer_blocks.9.attn1.to_q": (16, 16)}
    extra = lc.check_against_model(lc.infer_base(missing), missing, model, "ltx-2.3")
    assert extra.is_mismatch and extra.missing == ["transformer_blocks.9.attn1.to_q"]
    ours23 = lc.infer_base(_shapes(ATTN), {"pack": PACK_NAME, "base_model_version": "ltx-2.3"})
    assert lc.check_against_model(ours23, _shapes(ATTN), model, "ltx-2.3").status == "match"


def test_describe_reads_a_real_file(tmp_path):
    weights = _weights(ATTN + AUDIO)
    save_comfy_lora(tmp_path / "x.safetensors", weights,
                    lc.run_card({"pack": PACK_NAME, "trigger_word": "sks"}, weights=weights,
                                base_model_version="ltx-2.3"))
    lora = read_lora(tmp_path / "x.safetensors")
    text = lc.describe(lc.infer_base(lora.weights, lora.metadata), lora.metadata, lora.weights)
    assert "Base: LTX-2.3 (22B)  [metadata (this pack)]" in text
    assert "Modules: 20 (4 audio-branch), blocks 0..1" in text and "Rank: 4" in text and "trigger_word: sks" in text
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as fh:
        assert fh.metadata()["branches"] == "video+audio"
