"""Scoring throughput: the local engine (1 worker) vs the Ray engine (``--workers`` actors).

Both score the same labelled instances at the same K with the same tiny Qwen2-VL (or
``--model``), through the code `eqarm eval` runs: :func:`sample_all` in this process, and
:func:`sample_all_ray` over a local Ray cluster of ``--workers`` CPUs, one actor each. Every
worker is held to one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``), so the
ratio measures the engine, not intra-op threading. The instances are OpenEQA's demo questions
on its real 1280x720 video when OpenEQA is here (else a synthetic episode), repeated with
distinct ids.

Two rates per engine:

* ``scoring``: instances over the span from the first batch's start to the last batch's end,
  stamped inside the workers (``EQARewardModel.score`` wrapped), so model loading and actor
  start-up are left out;
* ``end_to_end``: instances over the whole call, as the driver sees it, the model's (or the
  actors') loading in.
* ``cpu_s_per_instance``: the workers' CPU seconds per instance; it does not depend on what
  else the machine runs, so ``workers * local / ray`` of it is the ratio on idle cores;
* ``per_worker_sum``: each worker's instances over its own first-start-to-last-end span,
  summed (the pool's rate once every actor is up: the actors' start-up skew left out).

Also checked: both engines give the same judgements. Prints a Markdown table, then one JSON
object as the last line.

Usage: python benchmarks/ray_engine.py [--n 48] [--k 4] [--tokens 16] [--batch 2] [--workers 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread per worker

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

from habitat_eqarm.data import EQAInstance
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.ray_engine import EngineOptions
from habitat_eqarm.rewards.sample_cache import EvalSettings, SampleCache, sample_all, sample_all_ray
from habitat_eqarm.testing import make_tiny_model
from habitat_eqarm.testing.toy import demo_or_synthetic_questions


def instances(folder: Path, n: int) -> tuple[list[EQAInstance], str]:
    """``n`` labelled instances on the demo questions (or a synthetic episode's)."""
    found, where = demo_or_synthetic_questions(folder)
    out = []
    for i in range(n):
        inst = found[i % len(found)]
        fields = {**inst.to_dict(), "question_id": f"{inst.question_id}#{i}"}
        fields.update(predicted_answer=inst.gt_answer, reasoning_steps=["I look.", "I answer."])
        out.append(EQAInstance(**{**fields, "gt_score": 8}))
    return out, where


class StampedModel:
    """The reward model, each judgement stamped with its batch's wall-clock start and end,
    the worker's process id and its CPU seconds (the batch's, split evenly)."""

    def __init__(self, model: EQARewardModel) -> None:
        self.model = model

    def score(self, *args, **kwargs):
        """``EQARewardModel.score``, then the stamps (``timings["t0"]``, ``["t1"]``)."""
        t0, c0 = time.time(), time.process_time()
        judgements = self.model.score(*args, **kwargs)
        t1, cpu = time.time(), (time.process_time() - c0) / len(judgements)
        for judgement in judgements:
            judgement.timings.update(t0=t0, t1=t1, pid=os.getpid(), cpu_s=cpu)
        return judgements

    def close(self) -> None:
        """Release the model."""
        self.model.close()


def open_model(path: str, batch_size: int) -> StampedModel:
    """The reward model on the hf backend, one thread (as each Ray actor has)."""
    import torch

    torch.set_num_threads(1)
    model = EQARewardModel.from_pretrained(path, "hf", num_keyframes=3, batch_size=batch_size)
    return StampedModel(model)


def rates(cache: SampleCache, start: float, end: float) -> dict[str, float]:
    """Instances per second while scoring, per worker summed, and end to end (module doc)."""
    stamps = [j.timings for j in cache.entries.values()]
    span = max(t["t1"] for t in stamps) - min(t["t0"] for t in stamps)
    per_worker = 0.0
    for pid in {t["pid"] for t in stamps}:
        mine = [t for t in stamps if t["pid"] == pid]
        per_worker += len(mine) / (max(t["t1"] for t in mine) - min(t["t0"] for t in mine))
    return {
        "scoring": len(stamps) / span,
        "per_worker_sum": per_worker,
        "end_to_end": len(stamps) / (end - start),
        "scoring_s": span,
        "cpu_s_per_instance": sum(t["cpu_s"] for t in stamps) / len(stamps),
        "wall_s": end - start,
    }


def main() -> None:
    """Run both engines and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="instances to score")
    parser.add_argument("--k", type=int, default=4, help="samples per instance")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per sample")
    parser.add_argument("--batch", type=int, default=2, help="instances per batch (a shard)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (and CPUs)")
    parser.add_argument("--model", default=None, help="model folder (default: a tiny one)")
    args = parser.parse_args()

    import ray

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path = args.model or str(make_tiny_model(folder / "tiny", seed=0))
        labelled, where = instances(folder, args.n)
        settings = EvalSettings(ks=(args.k,), max_new_tokens=args.tokens, batch_size=args.batch)
        opener = functools.partial(open_model, model_path, args.batch)

        local_cache = SampleCache(folder / "local.jsonl", {"run": "local"})
        start = time.time()
        model = opener()
        sample_all(model, labelled, settings, local_cache)
        local = rates(local_cache, start, time.time())
        model.close()

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        options = EngineOptions(engine="ray", ray_workers=args.workers, ray_num_cpus=1)
        ray_cache = SampleCache(folder / "ray.jsonl", {"run": "ray"})
        start = time.time()
        sample_all_ray(opener, labelled, settings, ray_cache, options)
        distributed = rates(ray_cache, start, time.time())
        ray.shutdown()

        def strip(cache):
            return {q: {**j.to_dict(), "timings": None} for q, j in cache.entries.items()}

        same = strip(local_cache) == strip(ray_cache)

    ratio = {k: distributed[k] / local[k] for k in ("scoring", "per_worker_sum", "end_to_end")}
    rows = [
        ("local, 1 worker", local),
        (f"ray, {args.workers} actors", distributed),
    ]
    print(f"Scoring {args.n} instances at K={args.k}, {args.tokens} new tokens, {where}")
    print("\n| engine | scoring inst/s | per worker, summed | end to end | scoring s | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        line = f"| {name} | {r['scoring']:.2f} | {r['per_worker_sum']:.2f} | {r['end_to_end']:.2f}"
        print(f"{line} | {r['scoring_s']:.1f} | {r['wall_s']:.1f} |")
    cpu_ratio = local["cpu_s_per_instance"] / distributed["cpu_s_per_instance"]
    shown = " | ".join(f"{ratio[k]:.2f}x" for k in ("scoring", "per_worker_sum", "end_to_end"))
    print(f"| ratio | {shown} | | |\n")
    cpu = (local["cpu_s_per_instance"], distributed["cpu_s_per_instance"])
    print(f"CPU s per instance: local {cpu[0]:.3f}, ray {cpu[1]:.3f}; on idle cores the ratio")
    print(f"would be {args.workers} x {cpu_ratio:.2f} = {args.workers * cpu_ratio:.2f}x\n")
    print(
        json.dumps(
            {
                "benchmark": "ray_engine",
                "data": where,
                "n": args.n,
                "k": args.k,
                "tokens": args.tokens,
                "batch": args.batch,
                "workers": args.workers,
                "local": local,
                "ray": distributed,
                "ratio_scoring": ratio["scoring"],
                "ratio_per_worker_sum": ratio["per_worker_sum"],
                "ratio_idle_cores": args.workers * cpu_ratio,
                "ratio_end_to_end": ratio["end_to_end"],
                "same_results": same,
                "load_average": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
