"""Fixtures of the builder tests, and a scripted VLM standing in for a capable generator/judge.

The tiny random model writes noise, so the paths that need well-formed generator and judge
outputs (the right/wrong mix, leak flags, LLM-match marks) are checked with
:class:`ScriptedVLMTestDouble`: a backend registered in the real registry that answers from
a script instead of from the frames. Everything else in those runs is the real code.
"""

from __future__ import annotations

import re

import pytest

from habitat_eqarm.data import load_openeqa
from habitat_eqarm.rewards.backends.base import (
    BACKENDS,
    GenerationResult,
    RewardBackend,
    register_backend,
)
from habitat_eqarm.rewards.prompts import WRONG_ANSWER_EXTRA

DOUBLE = "scripted-vlm-test-double"
WRONG = "a purple elephant"


class ScriptedVLMTestDouble(RewardBackend):
    """Answers generator, judge and LLM-match prompts from a script (test double).

    ``answers``: question -> the answer a right response gives. ``malformed_first``: how many
    calls in total return broken output before it behaves. ``leak``: judge critiques repeat the
    reference answer.
    """

    name = DOUBLE

    def __init__(self, model, answers=None, malformed_first=0, leak=False, **_):
        self.model_id = model
        self.answers = answers or {}
        self.malformed_left = malformed_first
        self.leak = leak
        self.calls = []
        self.prompt_ids = []  # GenerationRequest.prompt_id of each call (cache keys use it)

    def sample(self, requests, params):
        out = []
        for req in requests:
            text = req.messages[-1]["content"][-1]["text"]
            self.calls.append(text)
            self.prompt_ids.append(req.prompt_id)
            if self.malformed_left > 0:
                self.malformed_left -= 1
                out.append(GenerationResult(["no tags here"] * params.k))
                continue
            out.append(GenerationResult([self.reply(text)] * params.k))
        return out

    def reply(self, text):
        if "Reply with the mark only" in text:
            agrees = _field(text, "Answer to grade") in _field(text, REFERENCES)
            return f"<mark>{5 if agrees else 1}</mark>"
        if "Reference answer (for grading only)" in text:
            reference = _field(text, REFERENCE)
            right = _field(text, "Predicted answer") == reference
            critique = "The trace is grounded in the views."
            if self.leak:
                critique += f" It should have said {reference}."
            return f"<critique>{critique}</critique><score>{9 if right else 2}</score>"
        question = _field(text, "Question")
        wrong = WRONG_ANSWER_EXTRA.strip() in text
        answer = WRONG if wrong else self.answers.get(question, "unknown")
        return (
            "<reasoning_trace><think>I recall the walk.</think><think>I look at the views."
            f"</think></reasoning_trace><predicted_answer>{answer}</predicted_answer>"
        )


REFERENCE = r"Reference answer \(for grading only\)"
REFERENCES = r"Reference answer\(s\)"


def _field(text, label):
    match = re.search(rf"{label}: (.*)", text)
    return match.group(1).strip() if match else ""


@pytest.fixture()
def scripted_backend():
    """Registers the scripted test double under its name; yields the instances it made."""
    made = []

    def factory(model, **kwargs):
        made.append(ScriptedVLMTestDouble(model, **kwargs))
        return made[-1]

    register_backend(DOUBLE)(factory)
    yield made
    BACKENDS.pop(DOUBLE, None)


@pytest.fixture()
def demo_questions(openeqa_dir):
    """OpenEQA's 3 real demo questions (with their real episode video)."""
    return load_openeqa(openeqa_dir / "open-eqa-demo-data.json", data_root=openeqa_dir)
