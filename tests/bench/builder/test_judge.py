import json
from pathlib import Path

import pytest

from habitat_eqarm.bench.builder.generate import GenerateConfig, run_generate
from habitat_eqarm.bench.builder.journal import JournalError
from habitat_eqarm.bench.builder.judge import (
    LLM_MATCH_PROMPT,
    JudgeConfig,
    llm_match_score,
    parse_mark,
    round_score,
    run_judge,
)
from habitat_eqarm.data import read_jsonl
from habitat_eqarm.rewards.prompts import JUDGE_PROMPT

from .conftest import DOUBLE, WRONG


@pytest.fixture()
def responses(openeqa_dir, tmp_path, scripted_backend, demo_questions):
    """2 scripted responses per demo question: the first right, the second asked wrong."""
    answers = {q.question: q.gt_answer for q in demo_questions}
    cfg = GenerateConfig(
        model="scripted-generator",
        backend=DOUBLE,
        backend_kwargs={"answers": answers},
        questions=str(openeqa_dir / "open-eqa-demo-data.json"),
        out=str(tmp_path / "responses.jsonl"),
        n_responses=2,
        num_keyframes=2,
    )
    run_generate(cfg)
    return cfg.out


def judge_config(responses, tmp_path, **kw):
    fields = dict(
        model="scripted-judge", backend=DOUBLE, data=responses, out=str(tmp_path / "judged.jsonl")
    )
    return JudgeConfig(**{**fields, **kw})


def test_scores_critiques_and_leak_flags(responses, tmp_path, scripted_backend):
    cfg = judge_config(responses, tmp_path, mode="both", backend_kwargs={"leak": True}, k=3)
    report = run_judge(cfg)
    judged = read_jsonl(cfg.out)
    assert len(judged) == 6 and report.done_now == 6
    for inst in judged:
        right = inst.predicted_answer != WRONG
        assert inst.gt_score == (9 if right else 2)
        assert inst.meta["judge"]["scores"] == [inst.gt_score] * 3
        assert inst.meta["llm_match"]["mark"] == (5 if right else 1)
        # the critique repeats the reference: flagged when the response did not say it itself
        assert bool(inst.meta["judge"]["leak"]) is not right
        assert inst.keyframe_indices == [0, 167]
    assert report.counts["critiques flagged: leak GT answer"] == 3
    assert set(scripted_backend[-1].prompt_ids) == {JUDGE_PROMPT.id, LLM_MATCH_PROMPT.id}
    assert report.summary["llm_match_score"] == pytest.approx(50.0)
    md = (tmp_path / "judged.jsonl.report.md").read_text()
    assert "| overall | 6 | 0 | 50.0 |" in md
    assert "mean GT score, answers matching the GT | 9.0" in md


def test_the_judge_prompt_shows_the_gt_answer(responses, tmp_path, scripted_backend):
    run_judge(judge_config(responses, tmp_path, limit=1))
    (prompt,) = scripted_backend[-1].calls
    assert "Reference answer (for grading only): Eight chairs" in prompt


def test_malformed_judge_output_is_retried_and_kept_without_score(
    responses, tmp_path, scripted_backend
):
    cfg = judge_config(
        responses, tmp_path, backend_kwargs={"malformed_first": 3}, batch_size=1, limit=2
    )
    report = run_judge(cfg)
    first, second = read_jsonl(cfg.out)
    assert first.gt_score is None and first.meta["judge"]["status"] == "malformed"
    assert first.meta["judge"]["attempts"] == 2 and first.meta["judge"]["texts"] == ["no tags here"]
    assert second.gt_score is not None and second.meta["judge"]["attempts"] == 2
    assert report.counts["judge output malformed"] == 1


def test_resume_with_another_judge_is_refused(responses, tmp_path, scripted_backend):
    run_judge(judge_config(responses, tmp_path, limit=1))
    with pytest.raises(JournalError, match="model: 'scripted-judge' -> 'other'"):
        run_judge(judge_config(responses, tmp_path, model="other"))


def test_unusable_responses_are_skipped_unless_asked(responses, tmp_path, scripted_backend):
    lines = [json.loads(x) for x in Path(responses).read_text().splitlines()]
    lines[0]["meta"]["generation"]["usable"] = False
    lines[0]["predicted_answer"] = None
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = run_judge(judge_config(str(bad), tmp_path, out=str(tmp_path / "a.jsonl")))
    assert report.total == 5 and report.skipped[0]["reason"].startswith("malformed response")
    report = run_judge(
        judge_config(str(bad), tmp_path, out=str(tmp_path / "b.jsonl"), include_malformed=True)
    )
    assert report.total == 6 and not report.skipped


def test_marks_and_rounding():
    assert parse_mark("<mark>4</mark>") == (4, True)
    assert parse_mark("Your mark: 2") == (2, False)
    assert parse_mark("<mark>4</mark> or <mark>5</mark>") == (None, False)
    assert parse_mark("<mark>7</mark>") == (None, False)
    assert llm_match_score([5, 1, None, 3]) == pytest.approx(50.0)
    assert llm_match_score([None]) is None
    assert [round_score(x) for x in (None, 6.5, 6.49, 0.0)] == [None, 7, 6, 0]


def test_llm_match_is_text_only_and_runs_on_the_hf_backend(responses, tmp_path, tiny_model_path):
    cfg = JudgeConfig(
        model=str(tiny_model_path),
        data=responses,
        out=str(tmp_path / "llm.jsonl"),
        mode="llm_match",
        limit=2,
        max_new_tokens=4,
        max_attempts=1,
    )
    report = run_judge(cfg)
    rows = read_jsonl(cfg.out)
    assert len(rows) == 2 and all("judge" not in r.meta and r.gt_score is None for r in rows)
    assert all(r.meta["llm_match"]["prompt_id"] == "eqarm-llm-match-v1" for r in rows)
    assert report.summary["llm_match_unparsed"] == sum(
        r.meta["llm_match"]["mark"] is None for r in rows
    )
