"""Cheap text checks: does an answer match the reference, does a critique leak it.

Both are heuristics over normalised words (lower case, no punctuation, number words as digits,
articles and filler words dropped). They steer generation (ask for a wrong answer when every
response so far looks right) and flag critiques for a human in the benchmark builder, and give
agent GRPO its optional ground-truth-answer reward (an ablation beside EQA-RM's score). The
benchmark's ground-truth scores come from the judge and the reviewers, never from these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMBERS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}  # fmt: skip
_FILLER = set(
    "a an the is are was were be been it its this that there these those of in on at to by for "
    "with and or from as into onto i you we they he she my your our their has have had do does "
    "did can could would should will just some any".split()
)
_WORD = re.compile(r"[a-z0-9]+")

#: Phrases by which a critique refers to the answer it was told to keep secret.
REFERENCE_PHRASES = (
    "reference answer",
    "correct answer",
    "ground truth",
    "ground-truth",
    "expected answer",
    "gold answer",
    "right answer is",
)


def words(text: str | None) -> list[str]:
    """Normalised words of ``text``: lower case, number words as digits, filler dropped."""
    out = []
    for word in _WORD.findall((text or "").lower()):
        word = _NUMBERS.get(word, word)
        if word not in _FILLER:
            out.append(word)
    return out


def token_f1(a: Iterable[str], b: Iterable[str]) -> float:
    """F1 overlap of two word bags (SQuAD-style); 0 when either is empty."""
    a, b = list(a), list(b)
    if not a or not b:
        return 0.0
    common = sum(min(a.count(w), b.count(w)) for w in set(a))
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def answers_match(predicted: str | None, references: Iterable[str], threshold: float = 0.6) -> bool:
    """Whether ``predicted`` says what one of ``references`` says (normalised words).

    True when a reference's words are all in the prediction, or their F1 is at least
    ``threshold``. "Eight chairs" matches "There are 8 chairs"; "Bedroom" does not match
    "the living room".
    """
    pred = words(predicted)
    if not pred:
        return False
    for ref in references:
        ref_words = words(ref)
        if ref_words and (set(ref_words) <= set(pred) or token_f1(pred, ref_words) >= threshold):
            return True
    return False


def critique_leak(critique: str | None, gt_answer: str | None, response_text: str) -> str | None:
    """Why ``critique`` reveals ``gt_answer`` (docs/method.md §2: it must not), or None if not.

    Flags a critique that names the reference answer ("the correct answer is ...") or that
    contains every word of the reference answer which the response itself never used, e.g.
    "there are 8 chairs" for a response that said six and a reference of "Eight chairs".
    """
    text = (critique or "").lower()
    if not text:
        return None
    for phrase in REFERENCE_PHRASES:
        if phrase in text:
            return f"mentions the {phrase!r}"
    new_words = sorted(set(words(gt_answer)) - set(words(response_text)))
    critique_words = set(words(text))
    if new_words and all(w in critique_words for w in new_words):
        return f"uses the reference answer's word(s) {', '.join(new_words)}"
    return None
