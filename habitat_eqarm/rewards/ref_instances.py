"""A policy's text answer about a referenced episode, as the :class:`EQAInstance` to judge.

The remote-RM adapters (TRL, verl, OpenRLHF) receive strings: the episode reference
(:mod:`habitat_eqarm.data.episode_ref`) names the frames and the question, the response holds
the reasoning and answer in the generator format (:func:`parse_response`).
"""

from __future__ import annotations

from habitat_eqarm.data.episode_ref import EpisodeRef, strip_ref
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.rewards.parsing import parse_response


def instance_from_ref(ref: EpisodeRef, response: str, question_id: str = "") -> EQAInstance:
    """The instance judging ``response`` (reference tags removed) against ``ref``'s question.

    ``predicted_answer`` is None when no answer could be read: callers give such a response
    the no-answer reward instead of asking the model.
    """
    parsed = parse_response(strip_ref(response))
    return EQAInstance(
        question_id=ref.question_id or question_id or "remote",
        question=ref.question,
        episode_id=ref.episode_id or "",
        predicted_answer=parsed.answer,
        reasoning_steps=parsed.steps,
        keyframe_indices=list(ref.keyframe_indices),
    )
