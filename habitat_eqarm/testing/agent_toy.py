"""The agent toy: synthetic EQA questions and a tiny agent that already writes the answer format.

A tiny random Qwen2-VL writes no ``<predicted_answer>`` at all, so every reward would be 0 and
EQA-RM would never be asked. :func:`teach_agent_format` fine-tunes it briefly (SFT, the loss
on the completion only) on generator-format answers to the toy questions, half of them right
and half the wrong answer "purple", so agent GRPO starts from an agent that answers in format,
right about half the time.

Why "purple": the toy RFT set (``toy.make_toy_rft_set``, the same questions) teaches EQA-RM to
score the right answer about 9 and "purple" about 2, so the RFT model is a judge that tells the
agent's two kinds of answer apart without seeing the GT answer: a learnable toy for agent GRPO
with EQA-RM in the loop (``make_toy_questions`` with the same seed gives the same questions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from habitat_eqarm.data.schema import EQAInstance, write_jsonl
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.testing.learning import CPU, SMALL

FORMAT_STEPS = 120
WRONG = "purple"  # the wrong answer of the toy RFT set


def make_toy_questions(folder: str | Path, *, episodes: int = 2, seed: int = 0) -> Path:
    """``questions.jsonl`` under ``folder``: the synthetic episodes' questions with gt_answer."""
    folder = Path(folder)
    questions: list[EQAInstance] = []
    for e in range(episodes):
        _, qs = make_synthetic_episode(folder / f"episode{e}", seed=seed + e, frames_per_room=5)
        questions += qs
    return write_jsonl(folder / "questions.jsonl", questions)


def format_target(answer: str) -> str:
    """A generator-format answer (``eqarm-gen-v1``) with a fixed two-step trace."""
    return (
        "<reasoning_trace><think>I walked through the rooms.</think>"
        f"<think>I answer {answer}.</think></reasoning_trace>"
        f"<predicted_answer>{answer}</predicted_answer>"
    )


#: The critique and score the toy RM writes for a right / a "purple" answer (its RFT targets)
TOY_CRITIQUES = {True: ("is confirmed by", 9.0), False: ("is contradicted by", 2.0)}


def toy_revision_prompt(question: EQAInstance, first: str, n_frames: int) -> list[dict]:
    """The revision prompt after first answer ``first``, with a critique like the toy RM's."""
    from habitat_eqarm.rewards.revision import revision_messages

    verdict, score = TOY_CRITIQUES[first != WRONG]
    answered = EQAInstance.from_dict(
        {**question.to_dict(), "predicted_answer": first, "reasoning_steps": []}
    )
    answered.reasoning_steps = ["I walked through the rooms.", f"I answer {first}."]
    critique = f"The answer {first} {verdict} the frames."
    return revision_messages(answered, critique, score, n_frames)


def _format_rows(questions: list[EQAInstance], revision: bool) -> list[dict[str, Any]]:
    from habitat_eqarm.rewards.prompts import GENERATOR_PROMPT, build_messages
    from habitat_eqarm.training.common import instance_keyframes

    rows = []
    for q in questions:
        indices = instance_keyframes(q, SMALL["num_keyframes"])
        prompts = [build_messages(GENERATOR_PROMPT, q, len(indices))]
        if revision:  # each critique followed by either answer: the critique is not yet used
            prompts += [
                toy_revision_prompt(q, first, len(indices)) for first in (q.gt_answer, WRONG)
            ]
        for prompt in prompts:
            for answer in (q.gt_answer, WRONG):
                text = format_target(answer)
                rows.append(
                    {
                        "episode_path": q.episode_path,
                        "keyframe_indices": indices,
                        "prompt": prompt,
                        "completion": [
                            {"role": "assistant", "content": [{"type": "text", "text": text}]}
                        ],
                    }
                )
    return rows


def teach_agent_format(
    out: str | Path,
    model: str | Path,
    questions: str | Path,
    *,
    steps: int = FORMAT_STEPS,
    seed=0,
    revision: bool = False,
    learning_rate: float = 1e-2,
) -> Path:
    """SFT ``model`` on format answers to ``questions`` (see the module doc); the saved agent.

    ``revision``: also on revision prompts (a first answer, right or "purple", and a critique
    like the toy RM's), each followed by either answer, so the agent revises in format but, at
    the start, without regard to the critique: the start of critique-guided GRPO
    (``AgentGRPOConfig(mode="revise")``)."""
    from datasets import Dataset
    from transformers import AutoProcessor
    from trl import SFTConfig

    from habitat_eqarm.data.schema import read_jsonl
    from habitat_eqarm.rewards.backends.base import pixel_size
    from habitat_eqarm.training.common import attach_images
    from habitat_eqarm.training.rft import RFTTrainer

    rows = _format_rows(read_jsonl(questions), revision)
    dataset = Dataset.from_list(rows).with_transform(attach_images)
    processor = AutoProcessor.from_pretrained(str(model))
    processor.image_processor.size = pixel_size(SMALL["max_pixels"])
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=4,
        save_strategy="no",
        logging_steps=steps,
        seed=seed,
        max_length=None,
        remove_unused_columns=False,
        **CPU,
    )
    trainer = RFTTrainer(
        model=str(model), args=args, train_dataset=dataset, processing_class=processor
    )
    trainer.train()
    trainer.save_model(str(out))
    processor.save_pretrained(str(out))
    return Path(out)
