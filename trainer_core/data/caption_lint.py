"""Caption lint: the caption mistakes that most often spoil a character or style LoRA, each with its fix.

* ``caption_no_subject``: a subject phrase was given and a caption never uses it verbatim.
* ``caption_subject_wording``: no subject phrase was given, and a caption names the subject differently from the
  majority ("a female figure" where most say "a woman with brown hair"). Heuristic, see ``subject_mention``.
* ``caption_duplicate``: the same caption (case and spacing ignored) on several clips.
* ``caption_too_long``: more than the text encoder's 1024-token window; the model never saw text past it.

Token counts come from the real tokenizer when a counter is given (the Dataset Loader passes one when a CLIP is
connected), otherwise from ``estimate_tokens``, which errs high.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable, Sequence

from ..problems import WARNING, Problem

TOKEN_WINDOW = 1024
"""Gemma tokens the LTX-2.3 text encoder reads (ltx-trainer pads and truncates every caption to this)."""

_DETERMINERS = {"a", "an", "the", "this", "that", "one", "our", "his", "her", "their", "its"}
# Words that end the subject's noun phrase: auxiliaries, common verbs and prepositions that start the action.
_PHRASE_END = {
    "is", "are", "was", "were", "be", "being", "has", "have", "had", "does", "do", "can", "will", "who", "which",
    "that", "while", "as", "and", "then", "stands", "sits", "walks", "runs", "looks", "smiles", "turns", "holds",
    "speaks", "says", "talks", "moves", "appears", "wears", "rides", "dances", "sings", "jumps", "leans", "raises",
    "lifts", "stares", "gazes", "nods", "laughs", "waves", "plays", "reaches", "steps", "faces", "poses", "lies",
    "at", "on", "near", "by", "from", "into", "onto", "under", "behind", "beside", "toward", "towards", "across",
}
_LEAD_IN = re.compile(r"^(style:[^.]*[.,]\s*|in (a|an|the) [^,]{1,40},\s*)+", re.IGNORECASE)
_WORD = re.compile(r"[\w'-]+", re.UNICODE)


def estimate_tokens(text: str) -> int:
    """An upper-leaning Gemma token count without the tokenizer: English averages over 4 bytes a token, so a
    token per 3 UTF-8 bytes over-counts prose; Gemma splits numbers into single digits, so digits count extra.
    One more for the BOS token the encoder adds."""
    return 1 + math.ceil(len(text.encode("utf-8")) / 3) + sum(ch.isdigit() for ch in text)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _strip_trigger(caption: str, trigger: str) -> str:
    trigger = trigger.strip()
    if not trigger:
        return caption
    return re.sub(rf"(?<!\w){re.escape(trigger)}(?!\w)[,:]?", " ", caption, flags=re.IGNORECASE).strip()


def subject_mention(caption: str, trigger: str = "") -> str:
    """The caption's subject as written: its first noun phrase, found cheaply.

    Takes the first sentence, drops the trigger word, a leading "Style: ..." and a leading "In a medium shot,"
    clause, skips a determiner, then keeps words until an auxiliary, a common verb, an -ing form or a
    preposition that starts the action, at most six words. "A woman with brown hair walks along the beach" gives
    "woman with brown hair"; "The female figure is dancing" gives "female figure". It misreads some sentences,
    which is why the lint only compares mentions with the *majority* mention: a misread caption rarely matches
    anything, and consistent captions all yield the same phrase.
    """
    text = _LEAD_IN.sub("", _strip_trigger(caption, trigger)).strip()
    first = re.split(r"[.!?;:]\s", text + " ", maxsplit=1)[0]
    words = _words(first)
    while words and words[0] in _DETERMINERS:
        words = words[1:]
    phrase = []
    for word in words:
        if phrase and (word in _PHRASE_END or (word.endswith("ing") and len(word) > 5)):
            break
        phrase.append(word)
        if len(phrase) == 6:
            break
    return " ".join(phrase)


def _contains(caption: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", " ".join(_words(caption))) is not None


def lint_captions(captions: Sequence[tuple[str, str]], *, subject: str = "", trigger: str = "",
                  count_tokens: Callable[[str], int] | None = None) -> dict[str, list[Problem]]:
    """Problems per item id for ``(item_id, caption)`` pairs (captions as trained: trigger already inserted).

    Empty captions are left to the loader's own caption check.
    """
    found: dict[str, list[Problem]] = {}
    captions = [(item_id, text) for item_id, text in captions if text.strip()]

    def add(item_id: str, problem: Problem) -> None:
        found.setdefault(item_id, []).append(problem)

    subject_words = " ".join(_words(subject))
    if subject_words:
        for item_id, text in captions:
            if not _contains(text, subject_words):
                add(item_id, Problem(WARNING, "caption_no_subject", f"the caption never says the subject phrase "
                                     f"'{subject.strip()}'", "name the subject with exactly that phrase in every "
                                     "caption (the Caption Dataset node does), so the LoRA ties it to one wording"))
    else:
        _lint_wording(captions, trigger, add)

    first_with: dict[str, str] = {}
    for item_id, text in captions:
        key = " ".join(_words(text))
        if key in first_with:
            add(item_id, Problem(WARNING, "caption_duplicate", f"same caption as {first_with[key]}",
                                 "describe what differs in this clip (action, setting, camera, sound); identical "
                                 "captions teach the LoRA to ignore the text"))
        else:
            first_with[key] = item_id

    for item_id, text in captions:
        tokens = count_tokens(text) if count_tokens else estimate_tokens(text)
        if tokens > TOKEN_WINDOW:
            how = "tokens" if count_tokens else "tokens (estimated; connect the CLIP to the Dataset Loader to count " \
                                                "exactly)"
            add(item_id, Problem(WARNING, "caption_too_long", f"the caption is {tokens} {how}, over the text "
                                 f"encoder's {TOKEN_WINDOW}-token window", "shorten it: text past the window is "
                                 "cut off when LTX-2.3 reads prompts"))
    return found


def _lint_wording(captions: list[tuple[str, str]], trigger: str, add) -> None:
    mentions = {item_id: subject_mention(text, trigger) for item_id, text in captions}
    counts = Counter(m for m in mentions.values() if m)
    if len(captions) < 3 or not counts:
        return
    majority, votes = counts.most_common(1)[0]
    if votes < 2 or votes * 3 < len(captions):
        return
    for item_id, text in captions:
        if not _contains(_strip_trigger(text, trigger), majority):
            said = mentions[item_id] or "something else"
            add(item_id, Problem(WARNING, "caption_subject_wording", f"the subject reads '{said}' while {votes} of "
                                 f"{len(captions)} captions say '{majority}'", "name the subject with the same "
                                 "words in every caption, or set the Dataset Loader's subject phrase to check it"))
