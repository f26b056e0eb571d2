"""Fault injection: make the server answer some requests with an error status, for tests.

A plan is a comma-separated list of ``STATUS:COUNT`` and ``STATUS:RATE`` items. ``429:2,500:1``
answers the next two work requests with 429, the one after with 500, then serves normally.
``503:0.1`` answers each work request with 503 with probability 0.1 (seeded, so a run
repeats). Counted items are used up in order before rates apply. Only the work endpoints
(``/v1/chat/completions``, ``/v1/score``) are affected; health and stats never are.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any


class FaultPlan:
    """Which statuses to inject next (see the module docstring for the spec)."""

    def __init__(
        self,
        counted: Sequence[tuple[int, int]] = (),
        rates: Sequence[tuple[int, float]] = (),
        seed: int = 0,
    ) -> None:
        self.counted = [[status, count] for status, count in counted]
        self.rates = list(rates)
        self.injected = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> FaultPlan:
        """A plan from ``"429:2,500:1"`` / ``"503:0.1"``; an empty spec injects nothing."""
        counted, rates = [], []
        for item in filter(None, (part.strip() for part in spec.split(","))):
            status_text, sep, amount = item.partition(":")
            try:
                status = int(status_text)
                value = float(amount) if sep else float("nan")
            except ValueError:
                raise ValueError(f"fault {item!r}: expected STATUS:COUNT or STATUS:RATE") from None
            if not 400 <= status <= 599:
                raise ValueError(f"fault {item!r}: status must be 400..599")
            if value >= 1 and value.is_integer():
                counted.append((status, int(value)))
            elif 0 < value < 1:
                rates.append((status, value))
            else:
                raise ValueError(f"fault {item!r}: amount must be a count >= 1 or a rate in (0, 1)")
        return cls(counted, rates, seed)

    def next_status(self) -> int | None:
        """The status to answer the next work request with, or None to serve it."""
        with self._lock:
            status = self._draw()
            self.injected += status is not None
            return status

    def _draw(self) -> int | None:
        if self.counted:
            status = self.counted[0][0]
            self.counted[0][1] -= 1
            if self.counted[0][1] == 0:
                self.counted.pop(0)
            return status
        for status, rate in self.rates:
            if self._rng.random() < rate:
                return status
        return None

    def to_dict(self) -> dict[str, Any]:
        """What is still planned and how many faults were injected so far."""
        with self._lock:
            return {
                "pending": [{"status": s, "count": c} for s, c in self.counted],
                "rates": [{"status": s, "rate": r} for s, r in self.rates],
                "injected": self.injected,
            }
