"""The revision prompt of critique-guided answering: the agent's first response, EQA-RM's
critique and score of it, and a request to revise in the generator's format.

It lives here, beside the other prompts, because both the agent (``habitat_eqarm.agents``)
and the trainers (``habitat_eqarm.training``, one layer below the agents) build it. The reply
is read with :func:`~habitat_eqarm.rewards.parsing.parse_response`, as a first answer is.
"""

from __future__ import annotations

from typing import Any

from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.prompts import GENERATOR_PROMPT, Prompt, chat_messages, format_reasoning

REVISION_PROMPT = Prompt(
    id="eqarm-rev-v1",
    system=GENERATOR_PROMPT.system,
    user=(
        "Question: {question}\n\n"
        "Your earlier reasoning:\n{reasoning}\n\n"
        "Your earlier answer: {answer}\n\n"
        "A reviewer who saw the same views critiqued that response ({score}):\n{critique}\n\n"
        "Revise your response. Keep what the critique confirms, correct what it shows to be "
        "wrong or unsupported, and look at the views again before you answer. Think step by "
        "step, one short observation or deduction per step, and refer to views by what they "
        "show, never by frame number. Always give an answer.\n\n"
        "Reply in exactly this format:\n"
        "<reasoning_trace><think>step</think><think>step</think>...</reasoning_trace>"
        "<predicted_answer>answer</predicted_answer>"
    ),
)


def score_phrase(score: float | None) -> str:
    """How the critique's score reads in the prompt: "score 7 of 10", or that there is none."""
    if score is None or score < 0:
        return "no score given"
    return f"score {score:g} of 10"


def revision_text(instance: EQAInstance, critique: str | None, score: float | None) -> str:
    """The user text asking to revise ``instance``'s answer and trace given the critique."""
    return REVISION_PROMPT.render(
        question=instance.question.strip(),
        reasoning=format_reasoning(instance.reasoning_steps),
        answer=(instance.predicted_answer or "(no answer)").strip(),
        critique=(critique or "").strip() or "(no critique given)",
        score=score_phrase(score),
    )


def revision_messages(
    instance: EQAInstance,
    critique: str | None,
    score: float | None,
    n_frames: int,
    *,
    as_video: bool = False,
) -> list[dict[str, Any]]:
    """Chat messages of the revision turn (frames first, as the first turn had them)."""
    text = revision_text(instance, critique, score)
    return chat_messages(REVISION_PROMPT.system, text, n_frames, as_video)
