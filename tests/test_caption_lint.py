"""Caption lint: subject phrase, subject wording, duplicates, the 1024-token window; and its place in the loader."""

from __future__ import annotations

from media_factory import write_image

from trainer_core.data.caption_lint import TOKEN_WINDOW, estimate_tokens, lint_captions, subject_mention
from trainer_core.data.dataset import DatasetConfig, load_dataset


def _codes(found: dict, item_id: str) -> set[str]:
    return {p.code for p in found.get(item_id, [])}


def test_subject_phrase_must_appear_verbatim():
    captions = [("a", "sks, a woman with brown hair walks on a beach"),
                ("b", "A Woman  with Brown hair sits at a desk"),
                ("c", "sks, a female figure dances in the rain")]
    found = lint_captions(captions, subject="a woman with brown hair", trigger="sks")
    assert _codes(found, "a") == set() and _codes(found, "b") == set()
    assert _codes(found, "c") == {"caption_no_subject"}
    assert "'a woman with brown hair'" in found["c"][0].message


def test_subject_mention_reads_the_first_noun_phrase():
    assert subject_mention("sks a woman with brown hair walks along the beach.", "sks") == "woman with brown hair"
    assert subject_mention("The female figure is dancing slowly") == "female figure"
    assert subject_mention("Style: cinematic. In a medium shot, a man in a red jacket speaks") == \
        "man in a red jacket"


def test_wording_that_differs_from_the_majority_is_flagged():
    captions = [("1", "sks a woman with brown hair walks along the beach"),
                ("2", "sks a woman with brown hair is reading in a cafe"),
                ("3", "sks, a woman with brown hair smiles at the camera"),
                ("4", "sks a female figure dances in the rain"),
                ("5", "sks close-up: the woman with brown hair laughs")]
    found = lint_captions(captions, trigger="sks")
    assert set(found) == {"4"}
    problem = found["4"][0]
    assert problem.code == "caption_subject_wording"
    assert "'female figure'" in problem.message and "'woman with brown hair'" in problem.message
    assert "3 of 5" in problem.message


def test_no_wording_verdict_without_a_clear_majority():
    captions = [("1", "a cat sleeps"), ("2", "a dog runs"), ("3", "a bird sings"), ("4", "a fish swims")]
    assert lint_captions(captions) == {}


def test_duplicates_ignore_case_and_spacing():
    found = lint_captions([("x", "A man walks."), ("y", "a  MAN walks."), ("z", "a man runs.")],
                          subject="man")
    assert _codes(found, "y") == {"caption_duplicate"} and "x" in found["y"][0].message
    assert "x" not in found and "z" not in found


def test_too_long_with_a_real_counter_and_with_the_estimate():
    short, long = "a man walks. " * 10, "a man walks on and on. " * 170
    found = lint_captions([("s", short), ("l", long)], subject="man", count_tokens=lambda t: len(t.split()) + 1)
    assert _codes(found, "s") == set() and _codes(found, "l") == set()  # 1021 "tokens": inside the window
    found = lint_captions([("s", short), ("l", long + "extra words here " * 10)], subject="man",
                          count_tokens=lambda t: len(t.split()) + 1)
    assert _codes(found, "l") == {"caption_too_long"} and "estimated" not in found["l"][0].message
    found = lint_captions([("s", short), ("l", long)], subject="man")
    assert _codes(found, "l") == {"caption_too_long"} and "estimated" in found["l"][0].message


def test_estimate_errs_high_for_prose_and_counts_digits():
    prose = "A woman with short brown hair walks slowly along a quiet beach at sunset while the waves roll in."
    # Gemma's tokenizer gives about one token per English word for such text; the estimate must not be lower.
    assert estimate_tokens(prose) >= len(prose.split()) + 1
    assert estimate_tokens("1234567890") >= 11
    assert estimate_tokens("x" * 3 * TOKEN_WINDOW) > TOKEN_WINDOW


def test_loader_report_carries_the_lint(tmp_path):
    for index, (name, caption) in enumerate([("a", "a woman with brown hair walks"),
                                             ("b", "a woman with brown hair sits"),
                                             ("c", "a female figure dances"), ("d", "a female figure dances")]):
        write_image(tmp_path / f"{name}.png", index=index)
        (tmp_path / f"{name}.txt").write_text(caption, encoding="utf-8")
    handle = load_dataset(DatasetConfig(source=str(tmp_path), trigger_word="sks",
                                        subject_phrase="woman with brown hair"))
    items = {i.item_id: {p.code for p in i.problems} for i in handle.items}
    assert items["a.png"] == set() and items["b.png"] == set()
    assert items["c.png"] == {"caption_no_subject"}
    assert items["d.png"] == {"caption_no_subject", "caption_duplicate"}
    assert len(handle.usable_items()) == 4
    report = handle.report_text()
    assert "subject: 'woman with brown hair'" in report and "same caption as c.png" in report
