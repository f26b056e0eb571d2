"""The three prompts of EQA-RM (spec §2-3), in our own words, each with a version id.

* the reward-model prompt: keyframes, question, reasoning trace, predicted answer; never the
  ground-truth answer. Output ``<critique>...</critique><score>N</score>``.
* the response-generator prompt: keyframes and question; output a ``<reasoning_trace>`` of
  short ``<think>`` blocks and a ``<predicted_answer>``.
* the ground-truth judge prompt: everything the reward model sees plus the ground-truth answer,
  which the critique must not reveal.

Every record produced with a prompt carries its :attr:`Prompt.id`; change the id whenever the
text changes, so cached or published outputs can be traced to the exact wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from habitat_eqarm.data.schema import EQAInstance


@dataclass(frozen=True)
class Prompt:
    """A versioned prompt: ``system`` text and a ``user`` template filled by :meth:`render`."""

    id: str
    system: str
    user: str

    def render(self, **fields: str) -> str:
        """The user text with ``{name}`` fields filled in."""
        return self.user.format(**fields)


#: The reward model's rubric (spec §2), shared by the pointwise and multi-response prompts.
RM_RUBRIC = (
    "- 60%: is the answer plausible, specific enough, and confirmed by what the frames "
    "show?\n"
    "- 40%: is the trace sound: logical steps, references to things actually visible in "
    "the frames, and an answer that follows from the trace?\n"
    "Use the whole scale; do not default to extreme scores. Objects may lie outside the "
    "keyframes, so do not punish a claim only because you cannot see its object, but be "
    "strict about claims that the frames contradict.\n\n"
)

REWARD_MODEL_PROMPT = Prompt(
    id="eqarm-rm-v1",
    system=(
        "You evaluate answers to embodied questions. An agent explored an indoor scene, then "
        "answered a question about it and explained its reasoning. You see keyframes of its "
        "episode memory, the question, its reasoning trace and its answer. You do not know the "
        "correct answer: judge from what the frames show and how sound the reasoning is."
    ),
    user=(
        "The images above are keyframes of the agent's episode memory, in time order.\n\n"
        "Question: {question}\n\n"
        "Reasoning trace:\n{reasoning}\n\n"
        "Predicted answer: {answer}\n\n"
        "Score the response from 0 (worst) to 10 (best):\n"
        + RM_RUBRIC
        + "Reply with a short critique, then the integer score, and nothing else:\n"
        "<critique>your critique</critique><score>N</score>"
    ),
)

GENERATOR_PROMPT = Prompt(
    id="eqarm-gen-v1",
    system=(
        "You are an embodied agent that has explored an indoor scene. You answer questions "
        "about it from your memory of the walk, shown as keyframes in time order."
    ),
    user=(
        "Question: {question}\n\n"
        "Think step by step, one short observation or deduction per step: first what you need "
        "to find, then what you saw, then a final synthesis. Refer to views by what they show "
        "or when you saw them ('at first', 'later', 'near the end'), never by frame number. "
        "Always give an answer: if the frames do not settle it, give your most plausible "
        "guess.{extra}\n\n"
        "Reply in exactly this format:\n"
        "<reasoning_trace><think>step</think><think>step</think>...</reasoning_trace>"
        "<predicted_answer>answer</predicted_answer>"
    ),
)

#: Appended to the generator prompt when a benchmark builder needs a wrong response (spec §2).
WRONG_ANSWER_EXTRA = (
    " For this response, give a plausible but wrong answer, with reasoning that an agent "
    "might believe."
)

JUDGE_PROMPT = Prompt(
    id="eqarm-judge-v1",
    system=(
        "You grade answers to embodied questions against a reference answer. You see keyframes "
        "of the agent's episode memory, the question, the reference answer, the agent's "
        "reasoning trace and its answer."
    ),
    user=(
        "The images above are keyframes of the agent's episode memory, in time order.\n\n"
        "Question: {question}\n\n"
        "Reference answer (for grading only): {gt_answer}\n\n"
        "Reasoning trace:\n{reasoning}\n\n"
        "Predicted answer: {answer}\n\n"
        "Score the response from 0 (worst) to 10 (best):\n"
        "- 60%: does the predicted answer mean the same as the reference answer?\n"
        "- 40%: is the trace sound: logical steps, references grounded in what the frames "
        "show, and an answer that follows from the trace?\n"
        "You see only keyframes: do not punish mentions of objects you cannot see, but be "
        "strict about what you can see. Your critique must never state or hint at the "
        "reference answer; discuss only the response's own claims.\n\n"
        "Reply with a short critique, then the integer score, and nothing else:\n"
        "<critique>your critique</critique><score>N</score>"
    ),
)

PROMPTS = {p.id: p for p in (REWARD_MODEL_PROMPT, GENERATOR_PROMPT, JUDGE_PROMPT)}


def format_reasoning(steps: list[str]) -> str:
    """The reasoning trace as numbered lines ("Step 1: ..."); "(none given)" when empty."""
    if not steps:
        return "(none given)"
    return "\n".join(f"Step {i}: {step.strip()}" for i, step in enumerate(steps, 1))


def prompt_text(prompt: Prompt, instance: EQAInstance, *, wrong_answer: bool = False) -> str:
    """The user text of ``prompt`` for ``instance`` (its question, answer and trace)."""
    if prompt.id == JUDGE_PROMPT.id and not instance.gt_answer:
        raise ValueError(f"instance {instance.question_id!r}: the judge prompt needs gt_answer")
    return prompt.render(
        question=instance.question.strip(),
        reasoning=format_reasoning(instance.reasoning_steps),
        answer=(instance.predicted_answer or "(no answer)").strip(),
        gt_answer=(instance.gt_answer or "").strip(),
        extra=WRONG_ANSWER_EXTRA if wrong_answer else "",
    )


def build_messages(
    prompt: Prompt, instance: EQAInstance, n_frames: int, *, as_video: bool = False, **kw: Any
) -> list[dict[str, Any]]:
    """Chat messages for a VLM: system turn, then the frames (images or one video) and text.

    The frames themselves are passed to the processor separately, in the same order.
    """
    return chat_messages(prompt.system, prompt_text(prompt, instance, **kw), n_frames, as_video)


def chat_messages(
    system: str, text: str, n_frames: int, as_video: bool = False
) -> list[dict[str, Any]]:
    """A system turn, then one user turn: the frames (images or one video), then ``text``."""
    if as_video:
        media = [{"type": "video"}] if n_frames else []
    else:
        media = [{"type": "image"} for _ in range(n_frames)]
    return [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": [*media, {"type": "text", "text": text}]},
    ]
