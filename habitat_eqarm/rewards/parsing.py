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
