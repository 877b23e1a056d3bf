"""Caption Dataset through ComfyUI's real text-generation path, on a tiny random-weight Gemma 3 that ComfyUI's own
LTX-2.3 text encoder loader loads. The text is gibberish; what is checked is the plumbing: frames reach the vision
tower, sidecars are written, nothing is overwritten, a cancelled run resumes with the unfinished clips."""

from __future__ import annotations

import shutil

import pytest

LOADER = "LTX23Trainer_DatasetLoader"
CAPTION = "LTX23Trainer_CaptionDataset"
LOADER_DEFAULTS = dict(recursive=False, trigger_word="sks", trigger_position="start", strict=False,
                       allow_outside_root=False)


@pytest.fixture(scope="module")
def one_thread():
    import torch

    # Two shared cores: torch's default thread pool makes each tiny generation step hundreds of times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_gemma_clip(comfy_env, comfy_pack, run_node, tiny_ltx23_ckpt, one_thread):
    """(CLIP from LTXAVTextEncoderLoader, frames seen by the vision tower per call)."""
    import tiny_gemma
    from comfy.text_encoders import llama

    name = "tiny_gemma_3.safetensors"
    real_config = llama.Gemma3_12B_Config
    llama.Gemma3_12B_Config = tiny_gemma.tiny_config_class()
    try:
        tiny_gemma.write_tiny_gemma(str(comfy_env.path("models", "text_encoders", name)))
        (clip,) = run_node("LTXAVTextEncoderLoader", text_encoder=name, ckpt_name=tiny_ltx23_ckpt, device="default")
    finally:
        llama.Gemma3_12B_Config = real_config
    frames_seen = []
    vision = clip.cond_stage_model.gemma3_12b.transformer.vision_model
    vision.register_forward_hook(lambda module, args, out: frames_seen.append(args[0].shape[0]))
    return clip, frames_seen


@pytest.fixture
def clips(comfy_env):
    from media_factory import write_clip, write_image

    root = comfy_env.path("input", "caption_clips")
    shutil.rmtree(root, ignore_errors=True)
    write_clip(root / "a.mp4", frames=9)
    write_clip(root / "b.mp4", frames=17, audio=True)
    write_image(root / "c.png")
    (root / "a.txt").write_text("a square drifts, my own words", encoding="utf-8")
    return root


def _caption(run_node, dataset, clip, **kw):
    inputs = dict(subject_phrase="a grey square", trigger_word="", existing_captions="fill missing only",
                  max_length=6, frames_per_clip=3, seed=0)
    return run_node(CAPTION, dataset=dataset, clip=clip, **{**inputs, **kw})


def test_captions_missing_clips_through_comfy_generate(run_node, tiny_gemma_clip, clips):
    clip, frames_seen = tiny_gemma_clip
    frames_seen.clear()
    dataset, _ = run_node(LOADER, folder="caption_clips", **LOADER_DEFAULTS)
    run = _caption(run_node, dataset, clip)
    handle, report = run

    # b.mp4 (3 frames) and c.png (1 frame) went through the vision tower; a.mp4 has a caption and was left alone.
    assert sorted(frames_seen) == [1, 3]
    assert (clips / "a.txt").read_text(encoding="utf-8") == "a square drifts, my own words"
    for name in ("b", "c"):
        text = (clips / f"{name}.txt").read_text(encoding="utf-8")
        assert "a grey square" in text.lower() and text.endswith("\n")
    assert not list(clips.glob(".*.bak-*"))
    captions = {i.item_id: i.caption for i in handle.items}
    assert captions["a.mp4"] == "sks a square drifts, my own words"
    assert captions["b.mp4"].startswith("sks ") and captions["b.mp4"][4:] == \
        (clips / "b.txt").read_text(encoding="utf-8").strip()
    assert "kept" in report and "new" in report and run.ui["ltx23_report"][0]["text"]
    # The encoder stays loaded after captioning, so Latent Precompute's text phase reuses it without a reload.
    import comfy.model_management as mm

    assert any(loaded.model is clip.patcher for loaded in mm.current_loaded_models)

    frames_seen.clear()
    dataset, _ = run_node(LOADER, folder="caption_clips", **LOADER_DEFAULTS)
    _caption(run_node, dataset, clip)
    assert frames_seen == []  # every clip has a caption now


def test_replace_backs_up_and_resumes_after_cancel(run_node, tiny_gemma_clip, clips):
    import comfy.model_management as mm

    clip, frames_seen = tiny_gemma_clip
    frames_seen.clear()
    dataset, _ = run_node(LOADER, folder="caption_clips", **LOADER_DEFAULTS)
    vision = clip.cond_stage_model.gemma3_12b.transformer.vision_model
    # Press "cancel" while the second clip is being captioned: ComfyUI stops inside its generation loop.
    def press_cancel(*args):
        if len(frames_seen) == 2:
            mm.interrupt_current_processing(True)

    cancel = vision.register_forward_hook(press_cancel)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _caption(run_node, dataset, clip, existing_captions="replace")
    finally:
        cancel.remove()
    assert frames_seen == [3, 3]
    assert not (clips / "b.txt").exists()
    assert (clips / ".a.txt.bak-1").read_text(encoding="utf-8") == "a square drifts, my own words"
    first = (clips / "a.txt").read_text(encoding="utf-8")
    assert first != "a square drifts, my own words\n"

    frames_seen.clear()
    handle, report = _caption(run_node, dataset, clip, existing_captions="replace")
    assert frames_seen == [3, 1]  # b.mp4 and c.png; a.mp4 was finished before the cancel
    assert (clips / "a.txt").read_text(encoding="utf-8") == first
    assert not (clips / ".a.txt.bak-2").exists()
    assert "done earlier" in report


def test_loader_counts_caption_tokens_with_the_connected_clip(run_node, tiny_gemma_clip, clips):
    clip, _ = tiny_gemma_clip
    (clips / "b.txt").write_text("a grey square walks by. " * 300, encoding="utf-8")
    (clips / "c.txt").write_text("a grey square rests.", encoding="utf-8")
    dataset, report = run_node(LOADER, folder="caption_clips", subject_phrase="a grey square", clip=clip,
                               **LOADER_DEFAULTS)
    problems = {i.item_id: {p.code: p.message for p in i.problems} for i in dataset.items}
    tokens = len([t for t in clip.tokenize(dataset.items[1].caption)["gemma3_12b"][0] if t[0] != 0])
    assert tokens > 1024
    assert problems["b.mp4"]["caption_too_long"].startswith(f"the caption is {tokens} tokens, over")
    assert problems["a.mp4"] == {"caption_no_subject": problems["a.mp4"]["caption_no_subject"]}
    assert "caption_too_long" not in problems["c.png"] and "subject: 'a grey square'" in report


def test_a_clip_that_cannot_see_is_refused_with_the_fix(run_node, comfy_pack, clips):
    from comfy_harness import FakeClip

    dataset, _ = run_node(LOADER, folder="caption_clips", **LOADER_DEFAULTS)
    with pytest.raises(ValueError, match="Connect the LTX-2.3 text encoder"):
        _caption(run_node, dataset, FakeClip(8))
    assert not (clips / "b.txt").exists()
