"""`--engine ray` (Ray Data actors) against the local engine, on a local 2-CPU Ray cluster.

Few tests, one shared cluster (``ray_cluster``): each Ray run starts its actors afresh, which
costs seconds. The kill is real: SIGKILL of a reward-model actor process while shards remain.
"""

import json
import os
import signal
import threading
import time

import psutil
import pytest

from habitat_eqarm.bench.builder.generate import GenerateConfig, run_generate
from habitat_eqarm.bench.builder.judge import JudgeConfig, run_judge
from habitat_eqarm.cli.main import main
from habitat_eqarm.data import write_jsonl
from habitat_eqarm.rewards.ray_engine import EngineOptions, actor_resources, check_engine

ACTOR = "ray::MapWorker(MapBatches(_ShardActor))"


def eval_args(model, data, out, *extra):
    args = ["eval", "--model", str(model), "--data", str(data), "--out", str(out), "--k", "1,2,4"]
    # 24 tokens: each shard is busy long enough (about a second) for the killer to catch an
    # actor at work; with 6 the whole run could end between two of its looks on a loaded machine
    return [*args, "--max_new_tokens", "24", "--batch_size", "1", "--bootstrap", "0", *extra]


TORN = '{"fingerprint": {"mo'


def cache_lines(path):
    """The sample cache's records but a torn line, timings dropped (wall-clock time)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line != TORN]
    for row in rows:
        row["judgement"].pop("timings", None)
    return rows


def busy_actor_pids():
    """Reward-model actors of this session's Ray (descendants of this process) that are
    running a shard: Ray titles such a process ``ray::<actor class>.submit``."""
    pids = []
    for proc in psutil.Process().children(recursive=True):
        try:
            title = proc.cmdline()[:1]
        except psutil.Error:
            continue
        if title and title[0].startswith(ACTOR) and title[0].endswith(".submit"):
            pids.append(proc.pid)
    return pids


class ActorKiller(threading.Thread):
    """Once ``path`` has ``after`` lines (the run is under way), SIGKILLs an actor while it
    scores a shard."""

    def __init__(self, path, after):
        super().__init__(daemon=True)
        self.path, self.after = path, after
        self.killed, self.lines_then = None, None
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            lines = len(self.path.read_text().splitlines()) if self.path.is_file() else 0
            pids = busy_actor_pids()
            if lines >= self.after and pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed, self.lines_then = pids[0], lines
                return
            time.sleep(0.02)


@pytest.mark.slow
def test_eval_on_ray_survives_a_killed_actor_and_equals_the_local_engine(
    ray_cluster, tiny_model_path, labelled, tmp_path
):
    _, instances = labelled
    instances[3].episode_path = str(tmp_path / "gone.mp4")  # skipped and reported, both engines
    data = write_jsonl(tmp_path / "with-a-bad-one.jsonl", instances)
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert main(eval_args(tiny_model_path, data, local)) == 0
    expected = cache_lines(local / "samples.jsonl")
    assert len(expected) == len(instances) - 1 == 5

    # resume semantics shared with the local engine: 1 cached line and a torn one to start
    distributed.mkdir()
    first = (local / "samples.jsonl").read_text().splitlines()[0]
    (distributed / "samples.jsonl").write_text(f"{first}\n{TORN}")
    # the first actor seen at work is killed (the cache holds the 2 starting lines): waiting
    # for a Ray result first lost the race twice on a loaded machine (the run had ended)
    killer = ActorKiller(distributed / "samples.jsonl", after=2)
    killer.start()
    try:
        args = ["--engine", "ray", "--ray_workers", "2"]
        assert main(eval_args(tiny_model_path, data, distributed, *args)) == 0
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no actor was killed: the run ended first"
    assert killer.lines_then < 6  # killed mid-run (1 + torn + new lines), shards left to do
    assert not psutil.pid_exists(killer.killed) or psutil.Process(killer.killed).status() in (
        psutil.STATUS_ZOMBIE,
        psutil.STATUS_DEAD,
    )
    got = cache_lines(distributed / "samples.jsonl")
    ids = [row["judgement"]["question_id"] for row in got]
    assert len(ids) == len(set(ids)) == 5  # nothing duplicated, nothing lost
    assert got == expected  # same judgements (and order) as the local engine
    results = [json.loads((d / "results.json").read_text()) for d in (local, distributed)]
    assert results[0]["by_k"] == results[1]["by_k"]
    assert results[0]["failures"] == results[1]["failures"]
    assert [f["question_id"] for f in results[1]["failures"]] == [instances[3].question_id]
    assert results[1]["config"]["engine"] == "ray"


@pytest.mark.slow
def test_bench_generate_and_judge_on_ray_equal_the_local_engine(
    ray_cluster, tiny_model_path, openeqa_dir, tmp_path
):
    def generate(out, **kw):
        cfg = GenerateConfig(
            model=str(tiny_model_path),
            questions=str(openeqa_dir / "open-eqa-demo-data.json"),
            out=str(out),
            n_responses=2,
            num_keyframes=2,
            max_new_tokens=8,
            max_attempts=2,
            batch_size=1,
            **kw,
        )
        return run_generate(cfg), [json.loads(x) for x in out.read_text().splitlines()]

    report_local, local = generate(tmp_path / "local.jsonl")
    # resume: the first question's responses done already (the local engine's own lines)
    (tmp_path / "ray.jsonl").write_text("".join(json.dumps(r) + "\n" for r in local[:2]))
    (tmp_path / "ray.jsonl.settings.json").write_text(
        (tmp_path / "local.jsonl.settings.json").read_text()
    )
    report_ray, distributed = generate(tmp_path / "ray.jsonl", engine="ray", ray_workers=2)
    assert len(local) == 6 and distributed == local
    assert report_ray.already_done == 2 and report_ray.done_now == 4
    assert report_ray.counts == report_local.counts

    def judge(out, **kw):
        cfg = JudgeConfig(
            model=str(tiny_model_path),
            data=str(tmp_path / "local.jsonl"),
            out=str(out),
            k=2,
            include_malformed=True,  # the tiny model's responses are noise
            max_new_tokens=6,
            max_attempts=1,
            batch_size=2,
            **kw,
        )
        run_judge(cfg)
        return [json.loads(x) for x in out.read_text().splitlines()]

    judged = judge(tmp_path / "judged-ray.jsonl", engine="ray")
    assert judged == judge(tmp_path / "judged-local.jsonl")
    assert len({r["question_id"] for r in judged}) == len(judged) == 6


def test_actor_counts_and_engine_options():
    cpu_only = {"CPU": 8.0}
    assert actor_resources(EngineOptions(), cpu_only) == (8, 1.0, 0.0)
    assert actor_resources(EngineOptions(ray_num_cpus=4), cpu_only) == (2, 4, 0.0)
    assert actor_resources(EngineOptions(), {"CPU": 64.0, "GPU": 8.0}) == (8, 1.0, 1.0)
    assert actor_resources(EngineOptions(ray_workers=3), {"CPU": 64.0, "GPU": 8.0}) == (3, 1.0, 1.0)
    assert actor_resources(EngineOptions(ray_num_gpus=0.5), {"CPU": 8.0, "GPU": 2.0})[0] == 4
    with pytest.raises(ValueError, match="--engine must be one of local, ray"):
        check_engine(EngineOptions(engine="spark"))
    with pytest.raises(ValueError, match="--ray_num_cpus"):
        check_engine(EngineOptions(engine="ray", ray_num_cpus=0))
