"""Reading a reward model's output: ``<critique>...</critique><score>N</score>``.

:func:`parse_evaluation` never raises. A well-formed output (``format_ok=True``) is exactly:
optional whitespace, one ``<critique>`` block with non-empty content, optional whitespace, one
``<score>`` block holding a single integer 0..10 (whitespace around it allowed), optional
whitespace. Anything else is malformed; its ``score`` is then a lenient recovery for baseline
judges and reports only, never for training rewards (spec §4: malformed output gets R_a = 0).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

SCORE_MIN, SCORE_MAX = 0, 10

_STRICT = re.compile(
    r"\A\s*<critique>(?P<critique>.*?)</critique>\s*<score>\s*(?P<score>[0-9]+)\s*</score>\s*\Z",
    re.DOTALL,
)
_TAGS = ("<critique>", "</critique>", "<score>", "</score>")
_CRITIQUE_BLOCK = re.compile(r"<critique>(.*?)</critique>", re.DOTALL)
_SCORE_BLOCK = re.compile(r"<score>([^<]*)</score>")
_SCORE_PHRASE = re.compile(r"\bscore\s*:?\s*([+-]?[0-9]+(?:\.[0-9]+)?)(?![0-9.])", re.IGNORECASE)
_INTEGER = re.compile(r"\A\s*[+-]?[0-9]+\s*\Z")


@dataclass(frozen=True)
class ParsedEvaluation:
    """A parsed evaluation: the critique (None if no complete block), the score, validity."""

    critique: str | None
    score: int | None
    format_ok: bool


def _strict(text: str) -> ParsedEvaluation | None:
    match = _STRICT.match(text)
    if match is None:
        return None
    critique = match.group("critique")
    if not critique.strip() or any(tag in critique for tag in _TAGS):
        return None  # empty, or a second block hidden inside the first
    score = int(match.group("score"))
    if not SCORE_MIN <= score <= SCORE_MAX:
        return None
    return ParsedEvaluation(critique.strip(), score, True)


def lenient_score(text: str) -> int | None:
    """The one score a malformed output states, if it states exactly one.

    Candidates: the contents of complete ``<score>`` blocks that are a single integer, and
    phrases like "Score: 7" / "score 7" (any case, colon optional). Candidates outside 0..10
    are ignored; if exactly one distinct value remains it is returned, else None.
    """
    candidates = [m.group(1) for m in _SCORE_BLOCK.finditer(text) if _INTEGER.match(m.group(1))]
    candidates += [m.group(1) for m in _SCORE_PHRASE.finditer(text) if _INTEGER.match(m.group(1))]
    values = {int(c) for c in candidates} & set(range(SCORE_MIN, SCORE_MAX + 1))
    return values.pop() if len(values) == 1 else None


def parse_evaluation(text: str) -> ParsedEvaluation:
    """Parse a reward model's output; never raises (see module doc for the grammar)."""
    if not isinstance(text, str):
        return ParsedEvaluation(None, None, False)
    strict = _strict(text)
    if strict is not None:
        return strict
    block = _CRITIQUE_BLOCK.search(text)
    critique = block.group(1).strip() if block and block.group(1).strip() else None
    return ParsedEvaluation(critique, lenient_score(text), False)


AGGREGATES = ("mean", "majority", "median")


def aggregate_scores(scores: Sequence[float | None], method: str = "mean") -> float | None:
    """Combine K sampled scores into one (test-time scaling, spec §6).

    ``"mean"``, ``"majority"`` (the most frequent score; a tie gives the mean of the tied
    values) or ``"median"``. None entries (unparsable samples) are dropped; all None -> None.
    """
    if method not in AGGREGATES:
        raise ValueError(f"unknown aggregate {method!r}; choose one of {', '.join(AGGREGATES)}")
    valid = [float(s) for s in scores if s is not None]
    if not valid:
        return None
    if method == "mean":
        return sum(valid) / len(valid)
    if method == "median":
        return float(statistics.median(valid))
    counts = Counter(valid)
    top = max(counts.values())
    tied = [value for value, count in counts.items() if count == top]
    return sum(tied) / len(tied)


def score_spread(scores: Sequence[float | None]) -> float | None:
    """How much the K sampled scores disagree: their population standard deviation (0..5).

    0 when every valid sample gave the same score (a caller may stop sampling there); None
    entries are dropped; no valid sample -> None.
    """
    valid = [float(s) for s in scores if s is not None]
    return statistics.pstdev(valid) if valid else None


# The generator (agent) output format, eqarm-gen-v1: reasoning steps, then one answer.


@dataclass(frozen=True)
class ParsedResponse:
    """A generator output: its reasoning steps, answer, and whether it kept the format.

    ``format_ok``: exactly ``<reasoning_trace>`` of non-empty ``<think>`` blocks, then one
    non-empty ``<predicted_answer>``, nothing else. ``usable``: at least one step and an
    answer could be read, even if the format was not kept exactly.
    """

    steps: list[str]
    answer: str | None
    format_ok: bool

    @property
    def usable(self) -> bool:
        """Whether the response has both reasoning steps and an answer."""
        return bool(self.steps) and bool(self.answer)


_GEN_STRICT = re.compile(
    r"\A\s*<reasoning_trace>(?P<trace>.*?)</reasoning_trace>\s*"
    r"<predicted_answer>(?P<answer>.*?)</predicted_answer>\s*\Z",
    re.DOTALL,
)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<predicted_answer>(.*?)</predicted_answer>", re.DOTALL)
_TAG = re.compile(r"</?(think|reasoning_trace|predicted_answer)>")


def parse_response(text: str) -> ParsedResponse:
    """Read a generator output (the format of the ``eqarm-gen-v1`` prompt); never raises."""
    steps = [s.strip() for s in _THINK.findall(text) if s.strip() and not _TAG.search(s)]
    answers = [a.strip() for a in _ANSWER.findall(text) if a.strip() and not _TAG.search(a)]
    answer = answers[-1] if len(answers) == 1 else None
    match = _GEN_STRICT.match(text)
    format_ok = False
    if match and answer and steps:
        blocks = _THINK.findall(match["trace"])
        between = _THINK.sub("", match["trace"]).strip()
        format_ok = not between and len(blocks) == len(steps) and match["answer"].strip() == answer
    return ParsedResponse(steps, answer, format_ok)
