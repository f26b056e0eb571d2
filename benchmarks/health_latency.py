"""`GET /health` latency of a keep-alive client, with and without ``TCP_NODELAY``.

The app (``create_app`` over a backend that is never called) runs in-process with uvicorn on
loopback twice: on ``eqarm serve``'s own listening socket (``TCP_NODELAY`` set, which accepted
connections inherit) and on the same socket with the option cleared (Nagle's algorithm on).
One ``httpx.Client`` sends ``--requests`` GETs back to back after 5 warm-up ones.

Usage: python benchmarks/health_latency.py [--requests 40]
Prints a Markdown table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

import httpx

from habitat_eqarm.rewards.backends.base import RewardBackend
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.serve import app as app_module
from habitat_eqarm.testing.server import app_server


class Idle(RewardBackend):
    """A backend /health never calls."""

    model_id = "idle"

    def sample(self, requests, params):
        raise RuntimeError("not used by /health")


def with_nagle(host: str, port: int) -> socket.socket:
    """``eqarm serve``'s socket with ``TCP_NODELAY`` cleared again."""
    sock = serve_bind(host, port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    return sock


serve_bind = app_module.bind


def mean_ms(requests: int) -> float:
    app = app_module.create_app(EQARewardModel(Idle()), app_module.ServerSettings("idle"))
    with app_server(app) as url, httpx.Client() as client:
        health = url.removesuffix("/v1") + "/health"
        for _ in range(5):
            client.get(health)
        t0 = time.perf_counter()
        for _ in range(requests):
            client.get(health).raise_for_status()
        return (time.perf_counter() - t0) / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    nodelay = mean_ms(args.requests)
    app_module.bind = with_nagle  # app_server binds through serve.app.bind
    try:
        nagle = mean_ms(args.requests)
    finally:
        app_module.bind = serve_bind
    print("| listening socket | ms per GET /health |\n|---|---|")
    print(f"| TCP_NODELAY (eqarm serve) | {nodelay:.2f} |\n| Nagle on | {nagle:.2f} |")
    print(json.dumps({"nodelay_ms": round(nodelay, 3), "nagle_ms": round(nagle, 3)}))


if __name__ == "__main__":
    main()
