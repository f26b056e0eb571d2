"""The whole build on real OpenEQA questions with the tiny model as generator and judge.

Generation and judging run as real `eqarm` subprocesses killed with SIGKILL mid-run, then
resumed; the review goes through the real server's HTTP API; split, export and `eqarm eval`
follow. The tiny model writes noise, so its responses and judgements are malformed: the
run keeps them (``--include_malformed``) and the reviewer enters the scores. The same steps
through `eqarm serve` and the ``openai`` backend: test_pipeline_served.py.
"""

from __future__ import annotations

import json

import pytest

from habitat_eqarm.cli.main import main
from habitat_eqarm.data.loading import load_instances

from .pipeline import (
    check_generated,
    check_judged,
    generate_args,
    judge_args,
    killed_and_resumed,
    review_all,
    split_and_export,
    write_questions,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def work(openeqa_dir, tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    return {**write_questions(openeqa_dir, folder), "model": str(tiny_model_path)}


@pytest.fixture(scope="module")
def backend_args(work):
    """Generator and judge: the only options that name a backend (swap in any other here)."""
    kwargs = json.dumps({"max_pixels": 50176})  # small frames keep the CPU run short
    return ["--model", work["model"], "--backend", "hf", "--backend_kwargs", kwargs]


@pytest.fixture(scope="module")
def responses(work, openeqa_dir, backend_args):
    out = work["dir"] / "responses.jsonl"
    args = generate_args(work, openeqa_dir, backend_args, out)
    return out, killed_and_resumed(args, out, work["dir"] / "generate.log")


def test_generate_killed_resumes_without_loss_or_duplicates(responses, work):
    check_generated(*responses, work)


@pytest.fixture(scope="module")
def judged(responses, work, backend_args):
    out = work["dir"] / "judged.jsonl"
    args = judge_args(responses[0], backend_args, out)
    return out, killed_and_resumed(args, out, work["dir"] / "judge.log")


def test_judge_killed_resumes_without_loss_or_duplicates(judged, responses):
    check_judged(*judged, responses[0])


def test_review_split_export_and_eval(judged, work, openeqa_dir, capsys):
    verified = work["dir"] / "verified.jsonl"
    export = split_and_export(verified, work["dir"], openeqa_dir, review_all(judged[0], verified))
    assert "train: empty, left out" in capsys.readouterr().out
    assert load_instances(export, data_root=str(openeqa_dir))[0].episode_path == str(
        openeqa_dir / "open-eqa-hm3d-demo.mp4"
    )
    evaluation = work["dir"] / "eval"
    args = ["eval", "--model", work["model"], "--data", str(export), "--data_root"]
    args += [str(openeqa_dir), "--out", str(evaluation), "--k", "1", "--max_new_tokens", "4"]
    assert main([*args, "--limit", "2", "--num_keyframes", "2"]) == 0
    results = json.loads((evaluation / "results.json").read_text())
    assert results["n_scored"] == 2 and results["failures"] == []
