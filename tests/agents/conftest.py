"""Fixtures of the agent tests, and a scripted VLM standing in for a capable one.

The tiny random model writes noise, so the paths that need well-formed agent answers, revisions,
reward-model evaluations and judge scores are driven by :class:`ScriptedEQAVLMTestDouble`, a
backend registered in the real registry that replies from a script of right answers instead of
from the frames. Everything around it is the real code; the tiny model runs the same paths in
the tests that need no well-formed output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from habitat_eqarm.rewards.backends.base import GenerationResult, RewardBackend, register_backend

DOUBLE = "scripted-eqa-vlm-test-double"
WRONG = "purple"
#: Offsets added to the reward-model double's score of sample i of a request: with K >= 3 some
#: candidates miss the ground truth by more than RFT's tau = 2, so Eq. 1 both accepts and
#: rejects; K = 1 gives the exact score.
NOISE = (0, 3, -4, 1)


def field_of(text: str, name: str) -> str:
    match = re.search(rf"{name}: (.*)", text)
    return match.group(1).strip() if match else ""


@register_backend(DOUBLE)
class ScriptedEQAVLMTestDouble(RewardBackend):
    """Replies to the generator, revision, reward-model and judge prompts (test double).

    ``model``: a JSON file mapping each question to its right answer. Generator replies are
    right on the 1st, 3rd, ... call and ``WRONG`` on the others; a revision whose critique
    scored below 5 gives the right answer, otherwise keeps the earlier one; evaluations score 9
    for a right answer and 2 for a wrong one (reward-model samples with ``NOISE`` added);
    "broken" in a question gives unparsable replies.
    """

    name = DOUBLE

    def __init__(self, model, **_):
        self.model_id = str(model)
        self.answers = json.loads(Path(model).read_text())
        self.generator_calls = 0
        self.requests = []

    def sample(self, requests, params):
        self.requests.extend(requests)
        return [GenerationResult([self.reply(r, i) for i in range(params.k)]) for r in requests]

    def reply(self, request, sample):
        text = request.messages[-1]["content"][-1]["text"]
        question = field_of(text, "Question")
        right = self.answers.get(question, "unknown")
        if "broken" in question:
            return "I cannot say."
        if "Reference answer (for grading only)" in text:  # the judge
            score = 9 if field_of(text, "Predicted answer") == right else 2
            return f"<critique>The trace follows the views.</critique><score>{score}</score>"
        if "Predicted answer:" in text:  # the reward model
            base = 9 if field_of(text, "Predicted answer") == right else 2
            score = min(10, max(0, base + NOISE[sample % len(NOISE)]))
            critique = "The answer is checked against the views."
            return f"<critique>{critique}</critique><score>{score}</score>"
        if "Your earlier answer:" in text:  # a revision
            earlier = field_of(text, "Your earlier answer")
            scored = re.search(r"\(score (\d+) of 10\)", text)
            low = scored is not None and int(scored[1]) < 5
            return self.response(right if low else earlier, "I look again after the critique.")
        self.generator_calls += 1
        answer = right if self.generator_calls % 2 == 1 else WRONG
        return self.response(answer, "I recall the rooms I walked through.")

    @staticmethod
    def response(answer, step):
        return (
            f"<reasoning_trace><think>{step}</think><think>So the answer is {answer}.</think>"
            f"</reasoning_trace><predicted_answer>{answer}</predicted_answer>"
        )


@pytest.fixture(scope="session")
def synthetic_answers(tmp_path_factory) -> Path:
    """The double's script: the synthetic episode's questions and their right answers."""
    from habitat_eqarm.data.synthetic import make_synthetic_episode

    _, questions = make_synthetic_episode()
    path = tmp_path_factory.mktemp("double") / "answers.json"
    path.write_text(json.dumps({q.question: q.gt_answer for q in questions}))
    return path
