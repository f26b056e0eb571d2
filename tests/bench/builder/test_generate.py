import json

import pytest

from habitat_eqarm.bench.builder.common import StageReport
from habitat_eqarm.bench.builder.generate import (
    GenerateConfig,
    parse_response,
    run_generate,
    select_questions,
    wants_wrong_answer,
)
from habitat_eqarm.data import read_jsonl
from habitat_eqarm.rewards.prompts import GENERATOR_PROMPT

from .conftest import DOUBLE, WRONG


def test_parse_response_strict_and_lenient():
    ok = parse_response(
        " <reasoning_trace><think>First I look.</think>\n<think>Then I see a bed.</think>"
        "</reasoning_trace><predicted_answer>Bedroom</predicted_answer>\n"
    )
    assert ok.format_ok and ok.usable
    assert ok.steps == ["First I look.", "Then I see a bed."] and ok.answer == "Bedroom"
    chatty = parse_response(
        "Sure! <reasoning_trace><think>I look.</think></reasoning_trace>"
        "<predicted_answer>Bedroom</predicted_answer>"
    )
    assert chatty.usable and not chatty.format_ok
    assert not parse_response("<predicted_answer>Bedroom</predicted_answer>").usable  # no steps
    assert not parse_response("<think>x</think>").usable  # no answer
    two = "<think>x</think>" + "<predicted_answer>a</predicted_answer>" * 2
    assert parse_response(two).answer is None
    assert (
        parse_response(
            "<reasoning_trace>junk<think>x</think></reasoning_trace>"
            "<predicted_answer>a</predicted_answer>"
        ).format_ok
        is False
    )


def test_wrong_answer_policies():
    assert not wants_wrong_answer("adaptive", 0, [])
    assert wants_wrong_answer("adaptive", 2, [True, True])
    assert not wants_wrong_answer("adaptive", 2, [True, False])
    assert not wants_wrong_answer("adaptive", 1, [None])  # a malformed response is not "right"
    assert [wants_wrong_answer("alternate", n, []) for n in range(4)] == [False, True, False, True]
    assert not wants_wrong_answer("none", 3, [True, True, True])
    with pytest.raises(ValueError, match="wrong_answers"):
        wants_wrong_answer("sometimes", 1, [True])


def config(openeqa_dir, tmp_path, **kw):
    fields = dict(
        model="scripted",
        backend=DOUBLE,
        questions=str(openeqa_dir / "open-eqa-demo-data.json"),
        out=str(tmp_path / "responses.jsonl"),
        n_responses=3,
        num_keyframes=2,
    )
    return GenerateConfig(**{**fields, **kw})


def test_adaptive_mix_asks_for_a_wrong_answer_after_right_ones(
    openeqa_dir, tmp_path, scripted_backend, demo_questions
):
    answers = {q.question: q.gt_answer for q in demo_questions}
    cfg = config(openeqa_dir, tmp_path, backend_kwargs=json.dumps({"answers": answers}))
    report = run_generate(cfg)
    out = read_jsonl(cfg.out)
    by_id = {r.question_id: r for r in out}
    assert len(by_id) == 9
    first = [by_id[f"{demo_questions[0].question_id}#{n}"] for n in range(3)]
    # response 0 right -> 1 asked for a wrong one -> 2 plain again (and right)
    assert [r.meta["generation"]["asked_wrong"] for r in first] == [False, True, False]
    assert [r.predicted_answer for r in first] == ["Eight chairs", WRONG, "Eight chairs"]
    assert [r.meta["generation"]["matches_gt"] for r in first] == [True, False, True]
    assert all(r.keyframe_indices == [0, 167] and r.reasoning_steps for r in out)
    assert report.counts["asked for a wrong answer"] == 3 and report.done_now == 9
    assert set(scripted_backend[-1].prompt_ids) == {GENERATOR_PROMPT.id}  # for response caches
    written = json.loads((tmp_path / "responses.jsonl.report.json").read_text())
    assert written["counts"]["matching the GT answer"] == 6

    # nothing left to do: a re-run opens no backend and writes nothing
    scripted_backend.clear()
    again = run_generate(cfg)
    assert again.already_done == 9 and again.done_now == 0 and scripted_backend == []
    # more responses per question continue the same journal with new ids only
    bigger = run_generate(config(openeqa_dir, tmp_path, n_responses=4))
    assert bigger.done_now == 3 and len(read_jsonl(cfg.out)) == 12


def test_malformed_output_is_retried_then_kept_as_unusable(openeqa_dir, tmp_path, scripted_backend):
    cfg = config(
        openeqa_dir,
        tmp_path,
        n_responses=1,
        limit=2,
        batch_size=1,
        max_attempts=2,
        backend_kwargs={"malformed_first": 3},  # a dict, as a YAML config gives it
    )
    run_generate(cfg)
    a, b = read_jsonl(cfg.out)
    assert not a.meta["generation"]["usable"] and a.meta["generation"]["attempts"] == 2
    assert a.predicted_answer is None and a.meta["generation"]["text"] == "no tags here"
    assert b.meta["generation"]["usable"] and b.meta["generation"]["attempts"] == 2


def test_selection_and_missing_episodes_are_reported(openeqa_dir, tmp_path):
    cfg = GenerateConfig(
        model="unused",
        questions=str(openeqa_dir / "open-eqa-v0.json"),
        data_root=str(openeqa_dir),  # holds no episode of v0: every question is skipped
        categories="object recognition,world knowledge",
        sources="scannet",
        limit=5,
    )
    report = StageReport("generate")
    assert select_questions(cfg, report) == []
    assert len(report.skipped) == 5 and report.skipped[0]["reason"].startswith("episode not found")
    assert report.to_dict()["skipped_by_reason"] == {"episode not found": 5}
    cfg.categories = "object recognition,cooking"
    with pytest.raises(ValueError, match="unknown cooking"):
        select_questions(cfg, StageReport("generate"))


def test_missing_episode_question_is_skipped_not_fatal(openeqa_dir, tmp_path, scripted_backend):
    questions = json.loads((openeqa_dir / "open-eqa-demo-data.json").read_text())
    questions[1]["episode_history"] = "hm3d-v0/999-hm3d-missing"
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(questions))
    cfg = config(
        openeqa_dir,
        tmp_path,
        questions=str(path),
        data_root=str(openeqa_dir),
        n_responses=1,
        ids=f"{questions[0]['question_id']},{questions[1]['question_id']}",
    )
    report = run_generate(cfg)
    assert [r.question_id for r in read_jsonl(cfg.out)] == [questions[0]["question_id"] + "#0"]
    assert report.skipped == [
        {
            "id": questions[1]["question_id"],
            "reason": f"episode not found: hm3d-v0/999-hm3d-missing under {openeqa_dir}",
        }
    ]
