"""The generative pairwise protocol: two responses to one question, the RM names the better.

VideoRewardBench's pairwise setting (spec §8) for EQA: the reward model sees the keyframes once,
the question and two responses (reasoning trace and answer each, shown as "Response A" and
"Response B"), critiques both and ends with ``<verdict>A</verdict>`` or ``<verdict>B</verdict>``.
Every pair is asked in both orders, so a model that prefers a position shows it.

:func:`parse_verdict` never raises. A well-formed output is exactly: optional whitespace, one
non-empty ``<critique>`` block, optional whitespace, one ``<verdict>`` block holding ``A`` or
``B`` (whitespace around it allowed), optional whitespace. Anything else has no winner and
says why, in one of :data:`INVALID_REASONS`; no lenient recovery (a verdict read from prose
would credit a model for a format it did not keep).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from habitat_eqarm.data.schema import EQAInstance, base_question_id
from habitat_eqarm.rewards.prompts import Prompt, chat_messages, format_reasoning

PAIRWISE_PROMPT = Prompt(
    id="eqarm-rm-pair-v1",
    system=(
        "You compare answers to embodied questions. An agent explored an indoor scene; two "
        "responses to one question about it follow, each a reasoning trace and an answer. You "
        "see keyframes of the episode memory, the question and both responses. You do not know "
        "the correct answer: judge from what the frames show and how sound each reasoning is."
    ),
    user=(
        "The images above are keyframes of the agent's episode memory, in time order.\n\n"
        "Question: {question}\n\n"
        "Response A\nReasoning trace:\n{reasoning_a}\nPredicted answer: {answer_a}\n\n"
        "Response B\nReasoning trace:\n{reasoning_b}\nPredicted answer: {answer_b}\n\n"
        "Which response is better? Weigh most whether the answer is plausible, specific and "
        "confirmed by the frames, then whether the trace is sound and grounded in what is "
        "visible. The order in which the responses are shown says nothing about their "
        "quality. Objects may lie outside the keyframes, but be strict about claims that the "
        "frames contradict.\n\n"
        "Reply with a short critique of both responses, then the letter of the better one "
        "(A or B), and nothing else:\n"
        "<critique>your critique</critique><verdict>A or B</verdict>"
    ),
)

#: The two orders every pair is asked in: ``AB`` shows the pair's first response as A.
ORDERS = ("AB", "BA")
POSITIONS = ("A", "B")

#: Why a verdict is invalid (closed set, reported by count).
INVALID_REASONS = (
    "not text",
    "no verdict",
    "several verdicts",
    "verdict names no response",
    "verdict names both responses",
    "verdict is not exactly A or B",
    "no critique",
    "several critiques",
    "text outside the blocks",
)

_STRICT = re.compile(
    r"\A\s*<critique>(?P<critique>.*?)</critique>\s*<verdict>(?P<verdict>[^<]*)</verdict>\s*\Z",
    re.DOTALL,
)
_VERDICT = re.compile(r"<verdict>(.*?)</verdict>", re.DOTALL)
_CRITIQUE = re.compile(r"<critique>(.*?)</critique>", re.DOTALL)
_TAGS = ("<critique>", "</critique>", "<verdict>", "</verdict>")
_LETTER = re.compile(r"(?<![a-z])[AB](?![a-z])")
_BOTH_WORDS = re.compile(r"\b(both|tie|tied|equal|equally|same|either)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedVerdict:
    """A parsed pairwise output: critique (None without a complete block), the winning
    position ``"A"``/``"B"`` (None unless well formed), validity and, if invalid, why."""

    critique: str | None
    winner: str | None
    format_ok: bool
    reason: str | None


def _verdict_reason(content: str) -> str | None:
    """None when ``content`` is exactly A or B; otherwise what is wrong with it."""
    if content.strip() in POSITIONS:
        return None
    letters = set(_LETTER.findall(content))
    if len(letters) == 2 or _BOTH_WORDS.search(content):
        return "verdict names both responses"
    if not letters:
        return "verdict names no response"
    return "verdict is not exactly A or B"


def parse_verdict(text: str) -> ParsedVerdict:
    """Parse a pairwise output strictly; never raises (see the module doc for the grammar)."""
    if not isinstance(text, str):
        return ParsedVerdict(None, None, False, "not text")
    blocks = _CRITIQUE.findall(text)
    critique = blocks[0].strip() if len(blocks) == 1 and blocks[0].strip() else None
    if critique is not None and any(tag in critique for tag in _TAGS):
        critique = None  # a second block hidden inside the first
    verdicts = _VERDICT.findall(text)
    if not verdicts:
        return ParsedVerdict(critique, None, False, "no verdict")
    if len(verdicts) > 1:
        return ParsedVerdict(critique, None, False, "several verdicts")
    reason = _verdict_reason(verdicts[0])
    if reason is None and len(blocks) > 1:
        reason = "several critiques"
    if reason is None and critique is None:
        reason = "no critique"
    if reason is None and not _STRICT.match(text):
        reason = "text outside the blocks"
    if reason is not None:
        return ParsedVerdict(critique, None, False, reason)
    return ParsedVerdict(critique, verdicts[0].strip(), True, None)


@dataclass(frozen=True)
class ResponsePair:
    """Two responses to one question with different ground-truth scores.

    ``first`` and ``second`` are in canonical order (question ids sorted); ``question_id``
    names the pair (``"<first id>|<second id>"``), so caches and failure reports key on it.
    """

    first: EQAInstance
    second: EQAInstance

    @property
    def question_id(self) -> str:
        """The pair's id."""
        return pair_id(self.first.question_id, self.second.question_id)

    @property
    def base_question(self) -> str:
        """The question both responses answer."""
        return base_question_id(self.first.question_id)

    @property
    def better(self) -> str | None:
        """The question id of the response with the higher GT score (None when unlabelled)."""
        a, b = self.first.gt_score, self.second.gt_score
        if a is None or b is None or a == b:
            return None
        return self.first.question_id if a > b else self.second.question_id

    def shown(self, order: str) -> tuple[EQAInstance, EQAInstance]:
        """The responses as positions A and B in ``order``."""
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        return (self.first, self.second) if order == "AB" else (self.second, self.first)


def pair_id(first: str, second: str) -> str:
    """The id of the pair of responses ``first`` and ``second`` (canonical order)."""
    return f"{first}|{second}"


def pair_text(prompt: Prompt, a: EQAInstance, b: EQAInstance) -> str:
    """The user text of the pairwise prompt with ``a`` shown as Response A, ``b`` as B."""
    return prompt.render(
        question=a.question.strip(),
        reasoning_a=format_reasoning(a.reasoning_steps),
        answer_a=(a.predicted_answer or "(no answer)").strip(),
        reasoning_b=format_reasoning(b.reasoning_steps),
        answer_b=(b.predicted_answer or "(no answer)").strip(),
    )


def pair_messages(
    prompt: Prompt, a: EQAInstance, b: EQAInstance, n_frames: int, *, as_video: bool = False
) -> list[dict[str, Any]]:
    """Chat messages: system turn, then the frames once (images or a video) and the text."""
    return chat_messages(prompt.system, pair_text(prompt, a, b), n_frames, as_video)


@dataclass
class PairSample:
    """One sampled verdict: raw text, critique, winning position (None if invalid), reason."""

    text: str
    critique: str | None
    winner: str | None
    format_ok: bool
    reason: str | None

    @classmethod
    def from_text(cls, text: str) -> PairSample:
        """Parse ``text`` with :func:`parse_verdict`."""
        return cls(text=text, **asdict(parse_verdict(text)))


@dataclass
class PairJudgement:
    """K verdicts on one pair in each order (``samples["AB"]``, ``samples["BA"]``).

    ``first_id`` / ``second_id``: the pair's responses in canonical order; in order ``AB``
    position A is ``first_id``, in ``BA`` it is ``second_id``. ``timings`` are seconds.
    """

    first_id: str
    second_id: str
    samples: dict[str, list[PairSample]]
    prompt_id: str
    model: str
    keyframe_indices: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def question_id(self) -> str:
        """The pair's id (the key of caches, as a :class:`Judgement`'s question id is)."""
        return pair_id(self.first_id, self.second_id)

    def response_at(self, order: str, position: str) -> str:
        """The question id of the response shown at ``position`` in ``order``."""
        first_shown = self.first_id if order == "AB" else self.second_id
        other = self.second_id if order == "AB" else self.first_id
        return first_shown if position == "A" else other

    def votes(self, order: str, k: int) -> list[str | None]:
        """The response each of the first ``k`` samples in ``order`` voted for (None: invalid)."""
        return [
            None if s.winner is None else self.response_at(order, s.winner)
            for s in self.samples[order][:k]
        ]

    def invalid_reasons(self, order: str, k: int) -> Counter:
        """How many of the first ``k`` samples in ``order`` were invalid, by reason."""
        return Counter(s.reason for s in self.samples[order][:k] if not s.format_ok)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairJudgement:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["samples"] = {o: [PairSample(**s) for s in data["samples"][o]] for o in ORDERS}
        return cls(**data)


def pair_judgement_from_texts(
    pair: ResponsePair,
    texts: dict[str, Sequence[str]],
    *,
    prompt_id: str,
    model: str,
    keyframe_indices: Sequence[int] = (),
    timings: dict[str, float] | None = None,
) -> PairJudgement:
    """Parse the K texts of each order into a :class:`PairJudgement`."""
    return PairJudgement(
        first_id=pair.first.question_id,
        second_id=pair.second.question_id,
        samples={o: [PairSample.from_text(t) for t in texts[o]] for o in ORDERS},
        prompt_id=prompt_id,
        model=model,
        keyframe_indices=list(keyframe_indices),
        timings=dict(timings or {}),
    )
