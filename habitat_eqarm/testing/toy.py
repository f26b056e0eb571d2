"""A toy RFT set built locally: synthetic episodes, labelled answers, candidate evaluations;
and the questions the benchmarks run on (:func:`demo_or_synthetic_questions`).

Candidates stand in for an auxiliary evaluator's output (e.g. one written with an API model
and stored in the JSONL cache): rule-written critiques with scores near the ground truth, and
some malformed ones, so that Eq. 1 accepts some, rejects some and finds some instances too easy.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from habitat_eqarm.data.openeqa import find_openeqa_dir, load_openeqa
from habitat_eqarm.data.schema import EQAInstance, response_id, write_jsonl
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.model import judgement_from_texts
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT


def demo_or_synthetic_questions(folder: str | Path) -> tuple[list[EQAInstance], str]:
    """OpenEQA's demo questions on its real video when OpenEQA is found, else the questions
    of a synthetic episode written under ``folder``; and a note saying which."""
    data = find_openeqa_dir()
    if data is not None:
        found = load_openeqa(data / "open-eqa-demo-data.json", data_root=data)
        return found, "OpenEQA demo video, 1280x720"
    _, found = make_synthetic_episode(Path(folder) / "episode", frames_per_room=5)
    return found, "synthetic episode, 320x240"


def make_toy_rft_set(folder: str | Path, *, episodes: int = 2, n_rft: int = 4, seed: int = 0):
    """Write ``instances.jsonl`` and ``candidates.jsonl`` under ``folder``; return both paths."""
    folder = Path(folder)
    rng = random.Random(seed)
    instances, lines = [], []
    for e in range(episodes):
        _, questions = make_synthetic_episode(
            folder / f"episode{e}", seed=seed + e, frames_per_room=5
        )
        for q in questions:
            for n, (answer, gt) in enumerate([(q.gt_answer, 9), ("purple", 2)]):
                inst = toy_response(q, n, answer, gt)
                instances.append(inst)
                texts = [_candidate(rng, answer, gt) for _ in range(n_rft)]
                judgement = judgement_from_texts(
                    inst,
                    texts,
                    aggregate="mean",
                    prompt_id=REWARD_MODEL_PROMPT.id,
                    model="toy-rules",
                )
                lines.append(
                    json.dumps(
                        {
                            "fingerprint": {"evaluator": "toy-rules"},
                            "judgement": judgement.to_dict(),
                        }
                    )
                )
    instances_path = write_jsonl(folder / "instances.jsonl", instances)
    candidates_path = folder / "candidates.jsonl"
    candidates_path.write_text("\n".join(lines) + "\n")
    return instances_path, candidates_path


def _candidate(rng: random.Random, answer: str, gt: int) -> str:
    if rng.random() < 0.15:
        return f"The answer {answer} seems fine. Score: {gt}"  # malformed
    score = max(0, min(10, gt + rng.choice([-3, -1, 0, 0, 1, 3])))
    verdict = "is confirmed by" if gt >= 5 else "is contradicted by"
    return f"<critique>The answer {answer} {verdict} the frames.</critique><score>{score}</score>"


#: The responses of the value-head toy: (answer, GT score); ``None`` is the right answer.
PREFERENCE_RESPONSES = ((None, 9), ("I am not sure", 5), ("purple", 1))


def make_toy_preference_set(folder: str | Path, *, episode_seed: int = 0) -> Path:
    """``preferences.jsonl`` under ``folder``: each question of a synthetic episode answered
    three ways (right 9, unsure 5, wrong 1; the order rotates from question to question), for
    the value-head trainer's ranking losses."""
    folder = Path(folder)
    _, questions = make_synthetic_episode(
        folder / f"episode{episode_seed}", seed=episode_seed, frames_per_room=5
    )
    instances = []
    for i, q in enumerate(questions):
        shift = i % len(PREFERENCE_RESPONSES)  # the right answer is not always listed first
        listed = PREFERENCE_RESPONSES[shift:] + PREFERENCE_RESPONSES[:shift]
        for n, (answer, gt) in enumerate(listed):
            instances.append(toy_response(q, n, answer or q.gt_answer, gt))
    return write_jsonl(folder / "preferences.jsonl", instances)


def toy_response(question: EQAInstance, n: int, answer: str, gt: int) -> EQAInstance:
    """Response ``n`` to a synthetic ``question``: ``answer`` after a two-step trace, GT ``gt``."""
    return EQAInstance(
        question_id=response_id(question.question_id, n),
        question=question.question,
        category=question.category,
        source="other",
        episode_id=question.episode_id,
        gt_answer=question.gt_answer,
        predicted_answer=answer,
        reasoning_steps=["I walked through the rooms.", f"I answer {answer}."],
        episode_path=question.episode_path,
        gt_score=gt,
    )
