"""The whole build through the real server: the tiny model in `eqarm serve` on loopback.

Generator and judge are the ``openai`` backend pointed at the session's `eqarm serve`
subprocess (fixture ``eqarm_server``), the bearer token handed over only as an environment
variable. The steps are those of test_pipeline.py: generate and judge (GT scores and the
text-only LLM-match marks) killed with SIGKILL after their first line and resumed, each run a
subprocess whose output is kept; the review through the review server's HTTP API; split and
export. The server answers some requests with 429/500/503, so the stages log retries. The key
must appear in no file the stages wrote and in nothing they printed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from habitat_eqarm.bench.builder.judge import LLM_MATCH_PROMPT
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import read_jsonl
from habitat_eqarm.rewards.prompts import GENERATOR_PROMPT, JUDGE_PROMPT

from . import pipeline as steps

pytestmark = pytest.mark.slow

KEY_ENV = "EQARM_TEST_BENCH_KEY"


@pytest.fixture(scope="module")
def key(eqarm_server):
    """The server's token, in the environment only (the stages' subprocesses inherit it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, eqarm_server.token)
        yield eqarm_server.token
    eqarm_server.set_faults("")


@pytest.fixture(scope="module")
def work(openeqa_dir, tmp_path_factory):
    return steps.write_questions(openeqa_dir, tmp_path_factory.mktemp("pipeline-served"))


@pytest.fixture(scope="module")
def backend_args(eqarm_server, key, work):
    """Generator and judge: the served tiny model through the ``openai`` backend."""
    model = eqarm_server.get("models")["data"][0]["id"]
    kwargs = {
        "base_url": eqarm_server.base_url,
        "api_key_env": KEY_ENV,
        "cache_dir": str(work["dir"] / "cache"),
        "max_pixels": 50176,  # small frames keep the CPU run short
        "backoff_base": 0.05,
        "backoff_max": 0.2,
    }
    return ["--model", model, "--backend", "openai", "--backend_kwargs", json.dumps(kwargs)]


def chat_requests(server) -> int:
    return server.stats()["http"]["requests"].get("/v1/chat/completions", 0)


@pytest.fixture(scope="module")
def responses(work, openeqa_dir, backend_args, eqarm_server):
    out = work["dir"] / "responses.jsonl"
    args = steps.generate_args(work, openeqa_dir, backend_args, out)
    eqarm_server.set_faults("429:1,500:1")  # the first two requests of the run fail
    logs = work["dir"] / "generate.log", work["dir"] / "generate-resumed.log"
    return out, steps.killed_and_resumed(args, out, *logs)


def test_generate_through_the_server_killed_resumes(responses, work):
    steps.check_generated(*responses, work)
    record = read_jsonl(responses[0])[0].meta["generation"]
    assert record["backend"] == "openai" and record["model"] != ""
    log = (work["dir"] / "generate.log").read_text()
    assert "HTTP 429" in log and "retry 1/5" in log and "HTTP 500" in log  # and retried


@pytest.fixture(scope="module")
def judged(responses, work, backend_args, eqarm_server):
    out = work["dir"] / "judged.jsonl"
    args = [*steps.judge_args(responses[0], backend_args, out), "--mode", "both"]
    eqarm_server.set_faults("503:1")
    logs = work["dir"] / "judge.log", work["dir"] / "judge-resumed.log"
    return out, steps.killed_and_resumed(args, out, *logs)


def test_judge_and_text_only_marks_through_the_server_killed_resumes(judged, responses, work):
    steps.check_judged(*judged, responses[0])
    for inst in read_jsonl(judged[0]):
        assert inst.meta["judge"]["backend"] == "openai"
        mark = inst.meta["llm_match"]  # asked without frames: the server answered text only
        assert mark["prompt_id"] == LLM_MATCH_PROMPT.id and isinstance(mark["text"], str)
    assert "HTTP 503" in (work["dir"] / "judge.log").read_text()


def test_requests_carry_prompt_ids_and_a_rerun_costs_no_request(
    judged, work, openeqa_dir, backend_args, eqarm_server, key, capfd, caplog
):
    entries = [json.loads(p.read_text()) for p in (work["dir"] / "cache").rglob("*.json")]
    assert {e["key"]["prompt_id"] for e in entries} == {
        GENERATOR_PROMPT.id,
        JUDGE_PROMPT.id,
        LLM_MATCH_PROMPT.id,
    }
    # the same build into new files: every sample comes from the response cache
    before = chat_requests(eqarm_server)
    again = work["dir"] / "again"
    again.mkdir()
    args = steps.generate_args(work, openeqa_dir, backend_args, again / "responses.jsonl")
    with caplog.at_level(logging.DEBUG):  # in this process, logs go to caplog, not stderr
        assert main(args) == 0
        args = steps.judge_args(again / "responses.jsonl", backend_args, again / "judged.jsonl")
        assert main([*args, "--mode", "both"]) == 0
    assert chat_requests(eqarm_server) == before
    for name in ("responses.jsonl", "judged.jsonl"):
        first, second = (read_jsonl(folder / name) for folder in (work["dir"], again))
        assert sorted(map(repr, first)) == sorted(map(repr, second))
    assert key not in caplog.text + "".join(capfd.readouterr())


def test_review_split_export_and_the_key_is_nowhere(
    judged, work, openeqa_dir, key, capfd, backend_args
):
    verified = work["dir"] / "verified.jsonl"
    kept = steps.review_all(judged[0], verified)
    export = steps.split_and_export(verified, work["dir"], openeqa_dir, kept)
    assert (export / "README.md").is_file()
    # `eqarm eval` scores the export through the same server (no local model)
    evaluation = work["dir"] / "eval"
    args = ["eval", *backend_args, "--data", str(export), "--data_root", str(openeqa_dir)]
    args += ["--out", str(evaluation), "--k", "1,2", "--max_new_tokens", "8", "--limit", "2"]
    assert main(args) == 0
    results = json.loads((evaluation / "results.json").read_text())
    assert results["n_scored"] == 2 and results["failures"] == []
    printed = "".join(capfd.readouterr())
    files = [p for p in Path(work["dir"]).rglob("*") if p.is_file()]
    names = {p.name for p in files}
    # what the check covers: the stages' outputs, reports, logs, response cache, export
    assert {"responses.jsonl", "judged.jsonl.report.json", "judge-resumed.log"} <= names
    assert {"verified.jsonl", "test.jsonl"} <= names and len(files) > 20
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".arrow" for p in files)
    assert len(key) > 20 and key.encode() not in b"".join(p.read_bytes() for p in files)
    assert key not in printed
    recorded = read_jsonl(verified)[0].meta["judge"]["backend_kwargs"]  # options are recorded,
    assert recorded["base_url"] and "api_key_env" not in recorded  # not those named like keys
