"""Steps of the whole-build tests, shared by the runs over different generator/judge backends.

Each backend's test module supplies ``backend_args`` (the only options that name a backend)
and calls these: a questions file from real OpenEQA data, `eqarm bench generate` and `eqarm
bench judge` killed with SIGKILL after their first line and resumed, the review through the
real review server's HTTP API, then `eqarm bench split` and `eqarm bench export`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from habitat_eqarm.bench.builder.review import ReviewSession
from habitat_eqarm.bench.builder.review_server import ReviewServer
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import read_jsonl

N = 2  # responses per question
FAST = ["--num_keyframes", "2", "--max_new_tokens", "4", "--max_attempts", "1", "--batch_size", "1"]
EQARM = [sys.executable, "-m", "habitat_eqarm.cli.main"]


def write_questions(openeqa_dir: Path, folder: Path) -> dict:
    """A questions file: the 3 demo questions (real frames) + 4 real v0 ones (frames absent)."""
    demo = json.loads((openeqa_dir / "open-eqa-demo-data.json").read_text())
    v0 = json.loads((openeqa_dir / "open-eqa-v0.json").read_text())
    hm3d = [q for q in v0 if q["episode_history"].startswith("hm3d")][:2]
    scannet = [q for q in v0 if q["episode_history"].startswith("scannet")][:2]
    questions = folder / "questions.json"
    questions.write_text(json.dumps(demo + hm3d + scannet))
    return {"dir": folder, "questions": questions, "demo": demo}


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def kill_mid_run(args: list[str], out: Path, log: Path, timeout: float = 240) -> list[str]:
    """Run `eqarm ARGS` in a subprocess, SIGKILL it once a line is written; the lines then.

    What the subprocess prints goes to ``log``.
    """
    with log.open("ab") as sink:
        proc = subprocess.Popen([*EQARM, *args], stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not lines_of(out):
        assert proc.poll() is None, f"finished before the kill: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "no line written in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return lines_of(out)


def run_to_end(args: list[str], log: Path | None) -> None:
    """`eqarm ARGS` to the end: in this process, or in a subprocess printing to ``log``."""
    if log is None:
        assert main(args) == 0
        return
    with log.open("ab") as sink:
        done = subprocess.run([*EQARM, *args], stdout=sink, stderr=subprocess.STDOUT)
    assert done.returncode == 0, log.read_text()[-2000:]


def killed_and_resumed(args: list[str], out: Path, log: Path, resume_log: Path | None = None):
    """Kill `eqarm ARGS` after its first line, run it again to the end; the lines before."""
    before = kill_mid_run(args, out, log)
    assert 0 < len(before) < 3 * N
    run_to_end(args, resume_log)
    return before


def check_resumed(before: list[str], out: Path, expected_ids: list[str]) -> None:
    after = lines_of(out)
    assert after[: len(before)] == before  # nothing written before the kill was lost
    ids = [json.loads(line)["question_id"] for line in after]  # every line whole JSON
    assert sorted(ids) == sorted(expected_ids)  # nothing missing, nothing twice


def generate_args(work: dict, openeqa_dir: Path, backend_args: list[str], out: Path) -> list[str]:
    args = ["bench", "generate", *backend_args, "--questions", str(work["questions"])]
    args += ["--data_root", str(openeqa_dir), "--out", str(out), "--n_responses", str(N)]
    return args + FAST


def judge_args(responses: Path, backend_args: list[str], out: Path) -> list[str]:
    args = ["bench", "judge", *backend_args, "--data", str(responses), "--out", str(out)]
    return [*args, "--include_malformed", "true", *FAST]


def check_generated(out: Path, before: list[str], work: dict) -> None:
    """All N responses of each demo question once; the v0 questions skipped (no frames here)."""
    expected = [f"{q['question_id']}#{n}" for q in work["demo"] for n in range(N)]
    check_resumed(before, out, expected)
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["skipped_by_reason"] == {"episode not found": 4}  # v0 frames are absent
    assert report["counts"]["responses"] == 3 * N
    (first,) = [r for r in read_jsonl(out) if r.question_id.endswith("#0")][:1]
    assert first.keyframe_indices == [0, 167] and first.meta["generation"]["text"]


def check_judged(out: Path, before: list[str], responses: Path) -> None:
    """Every response judged once; the tiny model's malformed judgements kept without score."""
    check_resumed(before, out, [r.question_id for r in read_jsonl(responses)])
    for inst in read_jsonl(out):
        assert inst.meta["judge"]["prompt_id"] == "eqarm-judge-v1"
        assert inst.meta["judge"]["status"] in ("ok", "malformed")
        assert (inst.gt_score is None) == (inst.meta["judge"]["status"] == "malformed")


def decide(server: ReviewServer, body: dict) -> dict:
    request = urllib.request.Request(
        server.url + "api/decide",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "X-Review-Token": server.token},
    )
    with urllib.request.urlopen(request) as reply:
        return json.loads(reply.read())


def review_all(judged: Path, verified: Path) -> int:
    """Reject the first item and enter a score for each other one; how many were kept."""
    items = read_jsonl(judged)
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
    return len(items) - 1


def split_and_export(verified: Path, folder: Path, openeqa_dir: Path, kept: int) -> Path:
    """`eqarm bench split` then `eqarm bench export`; the exported dataset's folder."""
    splits = folder / "splits"
    assert main(["bench", "split", "--data", str(verified), "--out", str(splits)]) == 0
    test = read_jsonl(splits / "test.jsonl")  # the demo episode is HM3D: all in the benchmark
    assert len(test) == kept and read_jsonl(splits / "train.jsonl") == []
    export = folder / "EQARewardBench"
    args = ["bench", "export", "--splits", str(splits), "--out", str(export)]
    assert main([*args, "--relative_to", str(openeqa_dir)]) == 0
    return export
