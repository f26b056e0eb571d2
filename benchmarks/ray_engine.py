"""Scoring throughput: the local engine (1 worker) vs the Ray engine (``--workers`` actors).

Both score the same labelled instances at the same K with the same tiny Qwen2-VL (or
``--model``), through the code `eqarm eval` runs: :func:`sample_all` in this process, and
:func:`sample_all_ray` over a local Ray cluster of ``--workers`` CPUs, one actor each. Every
worker is held to one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``), so the
ratio measures the engine, not intra-op threading. The instances are OpenEQA's demo questions
on its real 1280x720 video when OpenEQA is here (else a synthetic episode), repeated with
distinct ids.

Two rates per engine, from the times the scored batches reach the driver:

* ``steady``: instances scored after the first batch arrived, over the time from that
  arrival to the last one (model loading and actor start-up excluded);
* ``end_to_end``: every instance over the whole call, the model's (or actors') loading in.

Also checked: both engines give the same judgements. Prints a Markdown table, then one JSON
object as the last line.

Usage: python benchmarks/ray_engine.py [--n 24] [--k 4] [--tokens 16] [--batch 2] [--workers 2]
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

from habitat_eqarm.data import EQAInstance, find_openeqa_dir, load_openeqa
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.ray_engine import EngineOptions
from habitat_eqarm.rewards.sample_cache import EvalSettings, SampleCache, sample_all, sample_all_ray
from habitat_eqarm.testing import make_tiny_model


def instances(folder: Path, n: int) -> tuple[list[EQAInstance], str]:
    """``n`` labelled instances on the demo questions (or a synthetic episode's)."""
    data = find_openeqa_dir()
    if data is not None:
        found = load_openeqa(data / "open-eqa-demo-data.json", data_root=data)
        where = "OpenEQA demo video, 1280x720"
    else:
        _, found = make_synthetic_episode(folder / "episode", frames_per_room=5)
        where = "synthetic episode, 320x240"
    out = []
    for i in range(n):
        inst = found[i % len(found)]
        fields = {**inst.to_dict(), "question_id": f"{inst.question_id}#{i}"}
        fields.update(predicted_answer=inst.gt_answer, reasoning_steps=["I look.", "I answer."])
        out.append(EQAInstance(**{**fields, "gt_score": 8}))
    return out, where


def open_model(path: str, batch_size: int) -> EQARewardModel:
    """The reward model on the hf backend, one thread (as each Ray actor has)."""
    import torch

    torch.set_num_threads(1)
    return EQARewardModel.from_pretrained(path, "hf", num_keyframes=3, batch_size=batch_size)


class Clock:
    """Arrival times of scored batches (the progress callback of ``sample_all``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.arrivals: list[tuple[float, int]] = []

    def __call__(self, n: int) -> None:
        if n:
            self.arrivals.append((time.perf_counter(), n))

    def rates(self) -> dict[str, float]:
        """Instances per second, steady and end to end (see the module doc)."""
        (t_first, n_first), t_last = self.arrivals[0], self.arrivals[-1][0]
        total = sum(n for _, n in self.arrivals)
        return {
            "steady": (total - n_first) / (t_last - t_first),
            "end_to_end": total / (t_last - self.start),
            "wall_s": t_last - self.start,
        }


def main() -> None:
    """Run both engines and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="instances to score")
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

        clock = Clock()
        local_cache = SampleCache(folder / "local.jsonl", {"run": "local"})
        model = opener()
        sample_all(model, labelled, settings, local_cache, progress=clock)
        model.close()
        local = clock.rates()

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        options = EngineOptions(engine="ray", ray_workers=args.workers, ray_num_cpus=1)
        clock = Clock()
        ray_cache = SampleCache(folder / "ray.jsonl", {"run": "ray"})
        sample_all_ray(opener, labelled, settings, ray_cache, options, progress=clock)
        distributed = clock.rates()
        ray.shutdown()

        def strip(cache):
            return {q: {**j.to_dict(), "timings": None} for q, j in cache.entries.items()}

        same = strip(local_cache) == strip(ray_cache)

    ratio = {key: distributed[key] / local[key] for key in ("steady", "end_to_end")}
    rows = [
        ("local, 1 worker", local),
        (f"ray, {args.workers} actors", distributed),
    ]
    print(f"Scoring {args.n} instances at K={args.k}, {args.tokens} new tokens, {where}")
    print("\n| engine | steady inst/s | end-to-end inst/s | wall s |\n|---|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['steady']:.2f} | {r['end_to_end']:.2f} | {r['wall_s']:.1f} |")
    print(f"| ratio | {ratio['steady']:.2f}x | {ratio['end_to_end']:.2f}x | |\n")
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
                "ratio_steady": ratio["steady"],
                "ratio_end_to_end": ratio["end_to_end"],
                "same_results": same,
                "load_average": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
