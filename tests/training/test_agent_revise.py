"""Agent GRPO in mode revise: the revision turn of critique-guided answering as the prompt."""

import json

import pytest

from habitat_eqarm.data import read_jsonl, write_jsonl
from habitat_eqarm.testing.agent_toy import CPU, SMALL
from habitat_eqarm.training.agent_grpo import (
    REVISION_ROWS,
    make_rm_reward,
    prepare,
    train_agent_grpo,
)
from habitat_eqarm.training.agent_grpo_config import AgentGRPOConfig

FAST = dict(
    num_generations=4,
    per_device_train_batch_size=4,
    max_completion_length=48,
    logging_steps=1,
    save_steps=1000,
    seed=0,
    rm_max_new_tokens=24,
    rm_device="cpu",
    learning_rate=1e-3,
    mode="revise",
)


def config(out, agent, data, rm, **kw) -> AgentGRPOConfig:
    fields = dict(output_dir=str(out), model_name_or_path=str(agent), data=str(data), rm_model=rm)
    return AgentGRPOConfig(**{**fields, **CPU, **SMALL, **FAST, **kw})


def test_config_checks_the_revise_options():
    ok = dict(output_dir="x", **CPU)
    assert AgentGRPOConfig(**ok).mode == "answer"
    assert AgentGRPOConfig(**ok, mode="revise", improvement_weight=0.5).improvement_weight == 0.5
    for bad, match in (
        (dict(mode="critique"), "mode must be"),
        (dict(improvement_weight=0.5), "needs mode revise"),
        (dict(mode="revise", improvement_weight=-1.0), "improvement_weight"),
        (dict(mode="revise", rm_weight=0.0, gt_weight=1.0), "rm_weight > 0"),
        (dict(mode="revise", first_answers=0), "first_answers"),
    ):
        with pytest.raises(ValueError, match=match):
            AgentGRPOConfig(**ok, **bad)


def four_questions(tmp_path, agent_toy):
    return write_jsonl(tmp_path / "q.jsonl", read_jsonl(agent_toy[0])[:4])


def test_revision_rows_hold_the_first_answer_and_its_critique_and_are_cached(
    tmp_path, rft_run, agent_toy
):
    data = four_questions(tmp_path, agent_toy)
    cfg = config(tmp_path / "o", agent_toy[1], data, str(rft_run.output_dir), first_answers=2)
    with pytest.raises(ValueError, match="must judge the first answers"):
        prepare(cfg)
    judge = make_rm_reward(cfg)
    dataset, _, stats = prepare(cfg, judge)
    assert stats.kept == 4 and len(dataset) > 0
    # every first answer gave a row or was counted, and EQA-RM judged them in one call
    assert len(dataset) + stats.skipped_no_first_answer + stats.skipped_no_first_score == 8
    assert judge.calls == 1
    for row in dataset:
        text = row["prompt"][-1]["content"][-1]["text"]
        assert "critiqued that response (score " in text
        assert f"Your earlier answer: {row['first_answer']}" in text
        assert row["first_critique"] in text and 0.0 <= row["first_reward"] <= 1.0
        assert f"{row['first_reward'] * 10:g} of 10" in text
        assert json.loads(row["instance"])["predicted_answer"] is None  # the question only
        assert len(row["images"]) == 3
    # a second preparation (a resumed run) revises the same first answers, judging nothing
    again = make_rm_reward(cfg, judge.reward_model)
    cached, _, stats2 = prepare(cfg, again)
    assert again.calls == 0 and stats2.to_dict() == stats.to_dict()
    keys = ("prompt", "first_answer", "first_reward", "first_critique")
    assert [[r[k] for k in keys] for r in cached] == [[r[k] for k in keys] for r in dataset]
    assert (tmp_path / "o" / REVISION_ROWS).is_file()
    judge.reward_model.close()


@pytest.mark.slow
def test_revise_training_pays_the_revised_score_plus_the_improvement(tmp_path, rft_run, agent_toy):
    data = four_questions(tmp_path, agent_toy)
    cfg = config(
        tmp_path / "o",
        agent_toy[1],
        data,
        str(rft_run.output_dir),
        max_steps=2,
        improvement_weight=0.5,
    )
    trainer = train_agent_grpo(cfg)
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert [e["step"] for e in logged] == [1, 2]
    assert trainer.rm_reward.calls <= 2  # the revisions: one batched call a step at most
    # TRL logs float32 means of 4 values in [-1, 1]: 1e-5 is far above their rounding
    for e in logged:
        revised, first = e["rewards/rm_reward/mean"], e["revise/first_reward"]
        assert e["rewards/improvement/mean"] == pytest.approx(revised - first, abs=1e-5)
        assert e["revise/improvement"] == pytest.approx(revised - first, abs=1e-5)
        total = revised + 0.5 * (revised - first)
        assert e["reward"] == pytest.approx(total, abs=1e-5)
        assert -1.0 <= e["revise/gt_gain"] <= 1.0
    assert (tmp_path / "o" / "agent_grpo_curves.png").is_file()
