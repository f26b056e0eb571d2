"""The whole build on real OpenEQA questions with the tiny model as generator and judge.

Generation and judging run as real `eqarm` subprocesses killed with SIGKILL mid-run, then
resumed; the review goes through the real server's HTTP API; split, export and `eqarm eval`
follow. The tiny model writes noise, so its responses and judgements are malformed: the
run keeps them (``--include_malformed``) and the reviewer enters the scores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from habitat_eqarm.bench.builder.review import ReviewSession
from habitat_eqarm.bench.builder.review_server import ReviewServer
from habitat_eqarm.bench.evaluate import load_instances
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import read_jsonl

pytestmark = pytest.mark.slow

N = 2  # responses per question
FAST = ["--num_keyframes", "2", "--max_new_tokens", "4", "--max_attempts", "1", "--batch_size", "1"]


@pytest.fixture(scope="module")
def work(openeqa_dir, tiny_model_path, tmp_path_factory):
    """A questions file: the 3 demo questions (real frames) + 4 real v0 ones (frames absent)."""
    folder = tmp_path_factory.mktemp("pipeline")
    demo = json.loads((openeqa_dir / "open-eqa-demo-data.json").read_text())
    v0 = json.loads((openeqa_dir / "open-eqa-v0.json").read_text())
    hm3d = [q for q in v0 if q["episode_history"].startswith("hm3d")][:2]
    scannet = [q for q in v0 if q["episode_history"].startswith("scannet")][:2]
    questions = folder / "questions.json"
    questions.write_text(json.dumps(demo + hm3d + scannet))
    return {"dir": folder, "questions": questions, "demo": demo, "model": str(tiny_model_path)}


@pytest.fixture(scope="module")
def backend_args(work):
    """Generator and judge: the only options that name a backend (swap in any other here)."""
    kwargs = json.dumps({"max_pixels": 50176})  # small frames keep the CPU run short
    return ["--model", work["model"], "--backend", "hf", "--backend_kwargs", kwargs]


def lines_of(path):
    return path.read_text().splitlines() if path.exists() else []


def kill_mid_run(args, out, timeout=240):
    """Run `eqarm ARGS` in a subprocess, SIGKILL it once a line is written; the lines then."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "habitat_eqarm.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while not lines_of(out):
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "no line written in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return lines_of(out)


def check_resumed(before, out, expected_ids):
    after = lines_of(out)
    assert after[: len(before)] == before  # nothing written before the kill was lost
    ids = [json.loads(line)["question_id"] for line in after]  # every line whole JSON
    assert sorted(ids) == sorted(expected_ids)  # nothing missing, nothing twice


@pytest.fixture(scope="module")
def responses(work, openeqa_dir, backend_args):
    out = work["dir"] / "responses.jsonl"
    args = ["bench", "generate", *backend_args, "--questions", str(work["questions"])]
    args += ["--data_root", str(openeqa_dir), "--out", str(out), "--n_responses", str(N), *FAST]
    before = kill_mid_run(args, out)
    assert 0 < len(before) < 3 * N
    assert main(args) == 0
    return out, before


def test_generate_killed_resumes_without_loss_or_duplicates(responses, work):
    out, before = responses
    expected = [f"{q['question_id']}#{n}" for q in work["demo"] for n in range(N)]
    check_resumed(before, out, expected)
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["skipped_by_reason"] == {"episode not found": 4}  # v0 frames are absent
    assert report["counts"]["responses"] == 3 * N
    (first,) = [r for r in read_jsonl(out) if r.question_id.endswith("#0")][:1]
    assert first.keyframe_indices == [0, 167] and first.meta["generation"]["text"]


@pytest.fixture(scope="module")
def judged(responses, work, backend_args):
    out = work["dir"] / "judged.jsonl"
    args = ["bench", "judge", *backend_args, "--data", str(responses[0])]
    args += ["--out", str(out), "--include_malformed", "true", *FAST]
    before = kill_mid_run(args, out)
    assert 0 < len(before) < 3 * N
    assert main(args) == 0
    return out, before


def test_judge_killed_resumes_without_loss_or_duplicates(judged, responses):
    out, before = judged
    check_resumed(before, out, [r.question_id for r in read_jsonl(responses[0])])
    for inst in read_jsonl(out):
        assert inst.meta["judge"]["prompt_id"] == "eqarm-judge-v1"
        assert inst.meta["judge"]["status"] in ("ok", "malformed")
        assert (inst.gt_score is None) == (inst.meta["judge"]["status"] == "malformed")


def decide(server, body):
    request = urllib.request.Request(
        server.url + "api/decide",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "X-Review-Token": server.token},
    )
    with urllib.request.urlopen(request) as reply:
        return json.loads(reply.read())


def test_review_split_export_and_eval(judged, work, openeqa_dir, capsys):
    items = read_jsonl(judged[0])
    verified = work["dir"] / "verified.jsonl"
    server = ReviewServer(ReviewSession(items, verified, "tester"), port=0).start()
    try:
        for n, item in enumerate(items):
            body = {"id": item.question_id, "action": "edit", "score": n % 11}
            if n == 0:
                body = {"id": item.question_id, "action": "reject"}
            decide(server, body)
    finally:
        server.close()
    assert len(read_jsonl(verified)) == len(items) - 1

    splits = work["dir"] / "splits"
    assert main(["bench", "split", "--data", str(verified), "--out", str(splits)]) == 0
    test = read_jsonl(splits / "test.jsonl")  # the demo episode is HM3D: all in the benchmark
    assert len(test) == len(items) - 1 and read_jsonl(splits / "train.jsonl") == []

    export = work["dir"] / "EQARewardBench"
    args = ["bench", "export", "--splits", str(splits), "--out", str(export)]
    assert main([*args, "--relative_to", str(openeqa_dir)]) == 0
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
