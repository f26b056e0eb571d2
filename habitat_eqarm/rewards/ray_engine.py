"""The Ray engine: shards of work mapped over reward-model actors with Ray Data.

`eqarm eval`, `eqarm bench generate` and `eqarm bench judge` take ``--engine ray``. The
driver cuts the work into the same shards the local engine would run one after another (the
same instances, batch sizes and seeds), makes a Ray Data dataset of them, one row per shard,
and ``map_batches`` it over an actor pool: each actor opens the backend once (hf, vllm, ...)
and scores the shards it is given. Each finished shard comes back to the driver, which alone
writes the cache or journal, one record at a time, as the local engine does. So:

- the results equal the local engine's (same shards, same seeds);
- a shard whose actor dies is re-done by Ray Data on a restarted actor (its defaults:
  ``max_restarts=-1``, ``max_task_retries=-1``); a shard result that arrives twice is
  dropped by its index, and a record id already written is never written again, so nothing
  is duplicated or lost;
- a killed driver resumes like the local engine: the cache or journal holds every finished
  record, and a re-run (with either engine) does only the missing shards.

Actors: one per GPU when the cluster has GPUs (``ray_num_gpus=1`` each); on CPUs
``cluster CPUs // ray_num_cpus``; ``ray_workers`` overrides the count. ``ray`` is an optional
extra (``pip install habitat-eqarm[ray]``); it is imported only when this engine runs.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ENGINES = ("local", "ray")


@dataclass(kw_only=True)
class EngineOptions:
    """How a command maps its work: in this process (``local``) or over Ray actors (``ray``).

    A mixin of the commands' configs (keyword-only, so it goes after their own fields).
    """

    engine: str = field(default="local", metadata={"help": "local or ray (Ray Data actors)"})
    ray_address: str | None = field(
        default=None, metadata={"help": "Ray cluster to join (auto: the running one; none: local)"}
    )
    ray_workers: int | None = field(
        default=None, metadata={"help": "reward-model actors (default: GPUs, else CPUs/num_cpus)"}
    )
    ray_num_cpus: float = field(default=1.0, metadata={"help": "CPUs per actor"})
    ray_num_gpus: float | None = field(
        default=None, metadata={"help": "GPUs per actor (default: 1 if the cluster has GPUs)"}
    )


def check_engine(options: EngineOptions) -> None:
    """Refuse an unknown engine or impossible actor resources before any work."""
    if options.engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {options.engine!r}")
    if options.ray_num_cpus <= 0 or (options.ray_workers is not None and options.ray_workers < 1):
        raise ValueError("--ray_num_cpus must be positive and --ray_workers at least 1")
    if options.ray_num_gpus is not None and options.ray_num_gpus < 0:
        raise ValueError("--ray_num_gpus must not be negative")


def import_ray():
    """The ``ray`` module, or an error saying how to install it."""
    try:
        import ray
        import ray.data  # the Data library comes with the extra
    except ImportError as err:
        raise ImportError(
            f"--engine ray needs Ray Data: pip install 'habitat-eqarm[ray]' ({err})"
        ) from None
    return ray


def actor_resources(options: EngineOptions, cluster: dict[str, float]) -> tuple[int, float, float]:
    """``(actors, CPUs each, GPUs each)`` for a cluster's resources (``ray.cluster_resources``)."""
    gpus = options.ray_num_gpus
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) >= 1 else 0.0
    workers = options.ray_workers
    if workers is None:
        if gpus > 0:
            workers = int(cluster.get("GPU", 0) // gpus)
        else:
            workers = int(cluster.get("CPU", 1) // options.ray_num_cpus)
    return max(1, workers), options.ray_num_cpus, gpus


class _ShardActor:
    """A Ray Data map worker: opens one worker (backend inside) and runs the shards it gets."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]], threads: int) -> None:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.worker = make_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        results = [pickle.dumps(self.worker(pickle.loads(shard))) for shard in batch["shard"]]
        return {"index": batch["index"], "result": results}


def map_shards(
    shards: Sequence[Any],
    make_worker: Callable[[], Callable[[Any], Any]],
    on_result: Callable[[Any, Any], None],
    options: EngineOptions,
) -> None:
    """``on_result(shard, worker(shard))`` for every shard, the workers in Ray actors.

    ``make_worker`` (picklable) is called once in each actor; its worker must be a picklable
    function of a picklable shard. Results come back in shard order; one that comes back a
    second time (its actor died after sending it) is dropped. Joins ``options.ray_address``,
    or starts a local Ray if none is running.
    """
    if not shards:
        return
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the command shows its own bar
    context.execution_options.preserve_order = True  # same order as the local engine
    workers, cpus, gpus = actor_resources(options, ray.cluster_resources())
    rows = [{"index": i, "shard": pickle.dumps(shard)} for i, shard in enumerate(shards)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        _ShardActor,
        fn_constructor_args=(make_worker, 0 if gpus else max(1, int(cpus))),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(shards))),
        num_cpus=cpus,
        num_gpus=gpus,
    )  # Ray Data restarts a dead actor and retries its shard (max_restarts=-1 by default)
    seen: set[int] = set()
    for row in dataset.iter_rows():
        index = int(row["index"])
        if index in seen:
            continue
        seen.add(index)
        on_result(shards[index], pickle.loads(row["result"]))
    missing = len(shards) - len(seen)
    if missing:
        raise RuntimeError(f"the Ray engine lost {missing} of {len(shards)} shards")
