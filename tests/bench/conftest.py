"""Fixtures of the evaluator tests (`eqarm eval`, either engine)."""

import pytest

from habitat_eqarm.data import EQAInstance, load_openeqa, write_jsonl


@pytest.fixture()
def labelled(openeqa_dir, tmp_path):
    """The 3 demo questions, each answered right (score 9) and wrong (score 2)."""
    out = []
    for inst in load_openeqa(openeqa_dir / "open-eqa-demo-data.json", data_root=openeqa_dir):
        for n, (answer, score) in enumerate([(inst.gt_answer, 9), ("A red sofa", 2)]):
            out.append(
                EQAInstance(
                    question_id=f"{inst.question_id}#{n}",
                    question=inst.question,
                    category=inst.category,
                    source=inst.source,
                    episode_id=inst.episode_id,
                    gt_answer=inst.gt_answer,
                    predicted_answer=answer,
                    reasoning_steps=["I walk through the home.", "I answer."],
                    episode_path=inst.episode_path,
                    gt_score=score,
                )
            )
    path = write_jsonl(tmp_path / "bench.jsonl", out)
    return path, out
