"""Throughput of `eqarm serve` with 1 and with 2 backend replicas (``--replicas N``).

Two real servers of the same tiny Qwen2-VL run side by side on loopback, identical but for
``--replicas``; each replica runs torch with ``--threads`` intra-op threads. The closed-loop
load of ``server_load.py`` (C client threads, R chat-completion requests each, K=1, the
critique forced to ``--tokens`` tokens) hits them in alternating rounds (order flipped every
round), so a busy neighbour on the machine hits both alike. The figure is the ratio of their
requests per second; the split of requests over the replicas comes from ``/v1/stats``.

Replicas help only where there are idle cores (or GPUs) for the second one: a replica's
generate call runs in its own thread and torch releases the GIL inside its kernels, so two
replicas overlap when the machine has room for both. On a 2-core machine shared with other
jobs expect about 1x.

Usage: python benchmarks/server_replicas.py [--clients 8] [--per-client 2] [--rounds 2]
       [--max-batch 4] [--threads 1] [--images 2] [--tokens 32]
Prints a Markdown table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from server_load import make_requests, run_clients, summarise  # the same load as server_load.py

from habitat_eqarm.rewards.backends.base import SamplingParams
from habitat_eqarm.testing import make_tiny_model
from habitat_eqarm.testing.server import start_server


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--max-wait-ms", type=float, default=50.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    return parser.parse_args()


def measure(servers: dict, model: str, args: argparse.Namespace) -> dict:
    """Interleaved rounds: per-server walls, latencies, errors."""
    params = SamplingParams(
        k=1, temperature=0.8, max_new_tokens=args.tokens, min_new_tokens=args.tokens
    )
    requests = make_requests(args.clients * args.per_client, args.images)
    results = {name: {"walls": [], "latencies": [], "errors": 0} for name in servers}
    for server in servers.values():  # warm-up: first-call costs stay out of the figures
        run_clients(server, model, requests[: args.clients], args.clients, params)
    start = time.perf_counter()
    for r in range(args.rounds):
        for name in list(servers) if r % 2 == 0 else list(reversed(servers)):
            wall, latencies, errors = run_clients(
                servers[name], model, requests, args.clients, params
            )
            results[name]["walls"].append(wall)
            results[name]["latencies"] += latencies
            results[name]["errors"] += errors
        if time.perf_counter() - start > args.max_seconds:
            break
    return results


def report(results: dict, split: list[int], args: argparse.Namespace) -> dict:
    """Print the Markdown table; the JSON summary."""
    rounds = len(results["1 replica"]["walls"])
    n = rounds * args.clients * args.per_client
    summary = {m: summarise(v["walls"], v["latencies"], n, v["errors"]) for m, v in results.items()}
    print(
        f"{args.clients} clients x {args.per_client} requests, {rounds} rounds per server, "
        f"max_batch {args.max_batch}, {args.threads} torch thread(s) per replica, "
        f"{args.images} images, {args.tokens} tokens; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; 2-replica split of requests: {split}\n"
    )
    print("| server | requests | errors | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['requests']} | {s['errors']} | {s['rps']:.2f} "
            f"| {s['p50_ms']:.0f} | {s['p99_ms']:.0f} |"
        )
    one, two = summary["1 replica"], summary["2 replicas"]
    return {
        "replicas_1_rps": round(one["rps"], 3),
        "replicas_2_rps": round(two["rps"], 3),
        "ratio": round(two["rps"] / one["rps"], 3),
        "errors": one["errors"] + two["errors"],
        "split": split,
        "requests": n,
        "rounds": rounds,
        "threads_per_replica": args.threads,
        "max_batch": args.max_batch,
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="server-replicas-"))
    model = str(make_tiny_model(tmp / "tiny", seed=0))
    common = ["--max_batch", str(args.max_batch), "--max_wait_ms", str(args.max_wait_ms)]
    common += ["--log_level", "warning"]
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    servers = {}
    try:
        for n in (1, 2):
            name = "1 replica" if n == 1 else f"{n} replicas"
            servers[name] = start_server(
                model, [*common, "--replicas", str(n)], log_path=tmp / f"{n}.log", env=env
            )
        results = measure(servers, model, args)
        replicas = servers["2 replicas"].stats()["batching"]["replicas"]
        split = [r["requests"] for r in replicas]
    finally:
        for server in servers.values():
            server.stop()
    print(json.dumps(report(results, split, args)))


if __name__ == "__main__":
    main()
