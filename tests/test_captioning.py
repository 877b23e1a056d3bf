"""Captioning a dataset on real files with a scripted captioner: which clips, which frames, what is written where,
what is kept, and resuming. (The real ComfyUI Gemma path is tests/comfy/test_caption_node.py.)"""

from __future__ import annotations

import json

import pytest
from media_factory import read_index, write_clip, write_image

from trainer_core.data import captioning
from trainer_core.data.captioning import CaptionSettings, caption_dataset
from trainer_core.data.dataset import DatasetConfig, load_dataset


class Scripted:
    """Answers with a fixed text per call and records what it was shown."""

    can_hear = False

    def __init__(self, answer="a grey square moves left, static camera.", finished=True):
        self.answer, self.finished = answer, finished
        self.calls = []

    def __call__(self, prompt, frames, max_tokens, seed):
        self.calls.append({"prompt": prompt, "indices": [read_index((f.numpy() * 255).round().astype("uint8"))
                                                         for f in frames], "max_tokens": max_tokens})
        return self.answer, self.finished


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "clips"
    write_clip(root / "has.mp4", frames=17)
    (root / "has.txt").write_text("my own caption of a square", encoding="utf-8")
    write_clip(root / "bare.mp4", frames=25, audio=True)
    write_image(root / "still.png", index=3)
    (root / "still.txt").write_text("  \n", encoding="utf-8")
    return root


def _load(root, **kw):
    return load_dataset(DatasetConfig(source=str(root), trigger_word="sks", **kw))


def test_fill_missing_writes_sidecars_and_leaves_captions_alone(folder):
    before = (folder / "has.txt").read_bytes()
    scripted = Scripted()
    settings = CaptionSettings(subject="a grey square", trigger="sks", mode="fill missing only", frames_per_clip=4,
                               max_tokens=77)
    report = caption_dataset(_load(folder), settings, scripted)

    assert (folder / "has.txt").read_bytes() == before
    assert (folder / "bare.txt").read_text(encoding="utf-8") == "sks a grey square moves left, static camera.\n"
    assert (folder / "still.txt").read_text(encoding="utf-8").startswith("sks a grey square")
    assert {r.item_id: r.status for r in report.rows} == {"bare.mp4": "new", "has.mp4": "kept", "still.png": "new"}
    # Four frames spread over the whole 25-frame clip, in order; one frame for the image.
    clip_call, image_call = scripted.calls
    assert clip_call["indices"] == [0, 8, 16, 24] and image_call["indices"] == [3]
    assert clip_call["max_tokens"] == 77
    assert '"a grey square"' in clip_call["prompt"] and "4 frames" in clip_call["prompt"]
    assert "sound you cannot hear" in clip_call["prompt"]
    assert "sound" not in image_call["prompt"]
    assert report.frames_seen == 5
    assert not list(folder.glob(".*.bak-*"))
    # The loader reads the new captions back, and the hidden journal and backups are no stray files to it.
    handle = _load(folder)
    assert {i.item_id: i.caption for i in handle.items}["bare.mp4"] == "sks a grey square moves left, static camera."
    assert not handle.notes


def test_replace_keeps_every_old_caption_and_skips_finished_clips(folder):
    settings = CaptionSettings(subject="a grey square", trigger="sks", mode="replace", frames_per_clip=2)
    report = caption_dataset(_load(folder), settings, Scripted())
    assert {r.item_id: r.status for r in report.rows} == {"bare.mp4": "new", "has.mp4": "replaced",
                                                          "still.png": "new"}
    assert (folder / ".has.txt.bak-1").read_text(encoding="utf-8") == "my own caption of a square"
    assert "old text kept in .has.txt.bak-1" in report.text()

    again = Scripted("something else entirely.")
    report = caption_dataset(_load(folder), settings, again)
    assert again.calls == [] and {r.status for r in report.rows} == {"done earlier"}

    report = caption_dataset(_load(folder), CaptionSettings(subject="a grey square", trigger="sks", mode="replace",
                                                            seed=1, frames_per_clip=2), again)
    assert len(again.calls) == 3
    assert (folder / ".has.txt.bak-1").read_text(encoding="utf-8") == "my own caption of a square"
    assert (folder / ".has.txt.bak-2").read_text(encoding="utf-8").startswith("sks a grey square moves left")
    assert (folder / "has.txt").read_text(encoding="utf-8").startswith("sks A grey square. something else")


def test_cancelled_run_resumes_with_the_unfinished_clips(folder):
    settings = CaptionSettings(mode="replace", frames_per_clip=2)
    first = Scripted()
    checks = []

    def cancel_after_one():
        checks.append(1)
        if len(checks) == 2:
            raise KeyboardInterrupt("cancel")

    with pytest.raises(KeyboardInterrupt):
        caption_dataset(_load(folder), settings, first, check_cancel=cancel_after_one)
    assert len(first.calls) == 1
    journal = json.loads((folder / ".ltx23_captions.json").read_text())
    assert list(journal["done"]) == ["bare.mp4"]

    second = Scripted()
    report = caption_dataset(_load(folder), settings, second)
    assert len(second.calls) == 2
    assert {r.item_id: r.status for r in report.rows} == {"bare.mp4": "done earlier", "has.mp4": "replaced",
                                                          "still.png": "new"}


def test_keep_previews_and_writes_nothing(folder):
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    report = caption_dataset(_load(folder), CaptionSettings(mode="keep", frames_per_clip=2), Scripted())
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert {r.status for r in report.rows} == {"preview"} and report.written == 0
    assert "current: my own caption of a square" in report.text()


def test_unfinished_text_ends_at_its_last_sentence_and_gets_the_subject():
    text, notes = captioning.clean_caption("Caption: A dog runs on grass. The camera pans left as the dog jum",
                                           finished=False, subject="a brown dog")
    assert text == "A brown dog. A dog runs on grass."
    assert notes == ["cut at max length", "subject phrase added"]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_manifest_captions_go_to_its_caption_column(tmp_path, suffix):
    write_clip(tmp_path / "v" / "a.mp4", frames=9)
    write_clip(tmp_path / "v" / "b.mp4", frames=9)
    rows = [{"video": "v/a.mp4", "caption": "old caption a", "note": "x"}, {"video": "v/b.mp4", "caption": ""}]
    manifest = tmp_path / f"data{suffix}"
    if suffix == ".json":
        manifest.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".jsonl":
        manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    else:
        manifest.write_text("video,caption,note\nv/a.mp4,old caption a,x\nv/b.mp4,,\n", encoding="utf-8")
    original = manifest.read_bytes()

    report = caption_dataset(_load(manifest), CaptionSettings(mode="fill missing only", frames_per_clip=2),
                             Scripted("a square."))
    assert {r.item_id: r.status for r in report.rows} == {"v/a.mp4": "kept", "v/b.mp4": "new"}
    assert (tmp_path / f".data{suffix}.bak-1").read_bytes() == original
    captions = {i.item_id: i.caption for i in _load(manifest).items}
    assert captions == {"v/a.mp4": "sks old caption a", "v/b.mp4": "sks a square."}
    assert "note" in manifest.read_text(encoding="utf-8")
