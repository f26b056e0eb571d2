"""An LRU memo of ``/v1/score`` judgements, so repeated requests cost no generation.

RL loops re-score the same (episode, question, answer, reasoning) often: a group of GRPO
completions that agree, a verifier re-checking an epoch's answers. A request is memoized only
when it names its ``seed``: an unseeded request asks for fresh samples and is always run.
The key holds everything that changes the judgement: the frames (by identity), the instance's
question, answer, reasoning and keyframes, and every sampling option.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any


def memo_key(frames_key: str, instance: dict[str, Any], options: dict[str, Any]) -> str:
    """The memo key of one instance scored with ``options`` over the frames ``frames_key``."""
    fields = ("question", "predicted_answer", "reasoning_steps", "keyframe_indices")
    what = {name: instance.get(name) for name in fields}
    payload = json.dumps([frames_key, what, options], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ScoreMemo:
    """At most ``size`` judgements, least recently used dropped first (``size`` 0: off)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"memo size must be at least 0, got {size}")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        """The memoized judgement dict (a copy), or None."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return json.loads(json.dumps(found))

    def put(self, key: str, judgement: dict[str, Any]) -> None:
        """Remember ``judgement`` under ``key``."""
        if self.size == 0:
            return
        with self._lock:
            self._items[key] = judgement
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters."""
        with self._lock:
            return {
                "size": self.size,
                "entries": len(self._items),
                "hits": self.hits,
                "misses": self.misses,
            }
