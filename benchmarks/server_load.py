"""Load on `eqarm serve`: concurrent clients, dynamic batching vs batch size 1.

Two real servers of the same tiny Qwen2-VL run side by side on loopback: one batching
(``--max_batch B``), one not (``--max_batch 1``). Each round, C client threads each send R
chat-completion requests back to back (closed loop) through our ``openai`` backend (cache
off): the reward-model prompt with ``--images`` synthetic 320x240 frames as JPEG data URLs,
one sample at temperature 0.8, the critique forced to ``--tokens`` tokens so both modes decode
the same amount. The two modes alternate within each round (their order flips every round),
so a busy neighbour on the machine hits both alike. Throughput is requests per second of each
mode's wall time; latency is per request, as a client sees it. Bounded by ``--rounds`` and
``--max-seconds``; loopback only.

The batching server waits up to ``--max-wait-ms`` for a batch to fill. Under closed-loop load
on a busy 2-core machine the clients' next requests arrive spread over more than 50 ms, and a
shorter wait splits them into two half-full batches that alternate (see docs/benchmarks.md).

Usage: python benchmarks/server_load.py [--clients 8] [--per-client 2] [--rounds 2]
       [--max-batch 8] [--max-wait-ms 200] [--images 2] [--tokens 64]
Prints a Markdown table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.rewards.backends.base import GenerationRequest, SamplingParams
from habitat_eqarm.rewards.backends.openai_compat import OpenAIBackend
from habitat_eqarm.rewards.prompts import REWARD_MODEL_PROMPT, build_messages
from habitat_eqarm.testing import make_tiny_model
from habitat_eqarm.testing.server import start_server


def make_requests(n: int, images: int) -> list[GenerationRequest]:
    """``n`` distinct reward-model requests over one synthetic episode's keyframes."""
    memory, questions = make_synthetic_episode(seed=0)
    frames = memory.frames(memory.keyframes(images))
    out = []
    for i in range(n):
        inst = questions[i % len(questions)]
        inst.predicted_answer = f"answer {i}"
        inst.reasoning_steps = [f"Step {i}: I looked around.", "Then I answered."]
        messages = build_messages(REWARD_MODEL_PROMPT, inst, images)
        out.append(GenerationRequest(messages, frames, prompt_id=REWARD_MODEL_PROMPT.id))
    return out


def run_clients(server, model, requests, clients, params) -> tuple[float, list[float], int]:
    """Wall seconds, per-request latencies (ms) and errors of one closed-loop round."""
    per_client = len(requests) // clients
    latencies: list[float] = []
    errors = 0
    failed_once: list[Exception] = []

    def client(c: int) -> tuple[list[float], int]:
        backend = OpenAIBackend(model, base_url=server.base_url, cache=False, max_retries=3)
        mine, failed = [], 0
        for request in requests[c * per_client : (c + 1) * per_client]:
            t0 = time.perf_counter()
            try:
                backend.generate([request], params)
            except Exception as err:  # counted, and the first one shown
                failed += 1
                if not failed_once:
                    failed_once.append(err)
                    print(f"client {c}: {type(err).__name__}: {err}", file=sys.stderr)
            mine.append((time.perf_counter() - t0) * 1000)
        backend.close()
        return mine, failed

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for mine, failed in pool.map(client, range(clients)):
            latencies += mine
            errors += failed
    return time.perf_counter() - t0, latencies, errors


def summarise(walls: list[float], latencies: list[float], n: int, errors: int) -> dict:
    """Requests per second over all rounds and latency percentiles (ms)."""
    ordered = sorted(latencies)
    return {
        "requests": n,
        "errors": errors,
        "rps": n / sum(walls),
        "p50_ms": float(np.percentile(ordered, 50)),
        "p99_ms": float(np.percentile(ordered, 99)),
        "round_rps": [round(n / len(walls) / w, 2) for w in walls],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=200.0)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    return parser.parse_args()


def measure(servers: dict, model: str, args: argparse.Namespace) -> tuple[dict, dict]:
    """Interleaved rounds of both modes: per-mode walls/latencies/errors, and batch sizes."""
    params = SamplingParams(k=1, temperature=0.8, max_new_tokens=args.tokens)
    requests = make_requests(args.clients * args.per_client, args.images)
    results: dict[str, dict] = {m: {"walls": [], "latencies": [], "errors": 0} for m in servers}
    for server in servers.values():  # warm-up: first-call costs stay out of the figures
        run_clients(server, model, requests[: args.clients], args.clients, params)
    warm = servers["batched"].stats()["batching"]
    start = time.perf_counter()
    for r in range(args.rounds):
        for mode in list(servers) if r % 2 == 0 else list(reversed(servers)):
            wall, latencies, errors = run_clients(
                servers[mode], model, requests, args.clients, params
            )
            results[mode]["walls"].append(wall)
            results[mode]["latencies"] += latencies
            results[mode]["errors"] += errors
        if time.perf_counter() - start > args.max_seconds:
            break
    after = servers["batched"].stats()["batching"]
    calls, done = after["calls"] - warm["calls"], after["requests"] - warm["requests"]
    sizes = {k: v - warm["sizes"].get(k, 0) for k, v in after["sizes"].items()}
    batching = {"mean_size": done / max(1, calls), "sizes": {k: v for k, v in sizes.items() if v}}
    return results, batching


def report(results: dict, batching: dict, args: argparse.Namespace) -> dict:
    """Print the Markdown table; the JSON summary."""
    rounds = len(results["batched"]["walls"])
    n = rounds * args.clients * args.per_client
    summary = {m: summarise(v["walls"], v["latencies"], n, v["errors"]) for m, v in results.items()}
    print(
        f"{args.clients} clients x {args.per_client} requests, {rounds} rounds per mode, "
        f"{args.images} images 320x240, {args.tokens} tokens; batched mode: mean batch "
        f"{batching['mean_size']:.2f} (calls by size: {batching['sizes']})\n"
    )
    print("| mode | requests | errors | req/s | p50 ms | p99 ms | req/s per round |")
    print("|---|---|---|---|---|---|---|")
    for mode, s in summary.items():
        print(
            f"| {mode} | {s['requests']} | {s['errors']} | {s['rps']:.2f} | {s['p50_ms']:.0f} "
            f"| {s['p99_ms']:.0f} | {', '.join(map(str, s['round_rps']))} |"
        )
    b, u = summary["batched"], summary["unbatched"]
    walls = zip(results["unbatched"]["walls"], results["batched"]["walls"], strict=True)
    return {
        "clients": args.clients,
        "requests": b["requests"] + u["requests"],
        "errors": b["errors"] + u["errors"],
        "batched_rps": round(b["rps"], 3),
        "unbatched_rps": round(u["rps"], 3),
        "speedup": round(b["rps"] / u["rps"], 3),
        "median_round_speedup": round(statistics.median(uw / bw for uw, bw in walls), 3),
        "p50_ms": round(b["p50_ms"], 1),
        "p99_ms": round(b["p99_ms"], 1),
        "unbatched_p50_ms": round(u["p50_ms"], 1),
        "unbatched_p99_ms": round(u["p99_ms"], 1),
        "mean_batch_size": round(batching["mean_size"], 2),
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "images": args.images,
        "tokens": args.tokens,
        "rounds": rounds,
    }


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="server-load-"))
    model = str(make_tiny_model(tmp / "tiny", seed=0))
    common = ["--max_wait_ms", str(args.max_wait_ms), "--log_level", "warning"]
    common += ["--backend_kwargs", json.dumps({"min_new_tokens": args.tokens})]  # fixed length
    batched = ["--max_batch", str(args.max_batch), *common]
    servers = {}
    try:
        servers["batched"] = start_server(model, batched, log_path=tmp / "batched.log")
        unbatched = ["--max_batch", "1", *common]
        servers["unbatched"] = start_server(model, unbatched, log_path=tmp / "unbatched.log")
        results, batching = measure(servers, model, args)
    finally:
        for server in servers.values():
            server.stop()
    print(json.dumps(report(results, batching, args)))


if __name__ == "__main__":
    main()
