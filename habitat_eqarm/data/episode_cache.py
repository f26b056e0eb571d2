"""The one cache of open episode memories (and of keyframes decoded from them).

Opening a memory lists a folder or reads a video's header, and a video's reader then holds a
file handle; the same episode is asked for again and again (the N responses to one question in
the bench stages, each keyframe of an item on the review page, several instances of one
episode in a scoring call, every reset of the env on a question, GRPO's G copies of a prompt).
Each of those users keeps its memories in an :class:`EpisodeCache`:

* ``EpisodeCache(size=8)``: the 8 most recently used stay open (readers hold file handles);
* ``EpisodeCache(size=None)``: every memory opened stays (one call's episodes, or an env's
  questions, some of them in-memory episodes given with :meth:`EpisodeCache.put`).

Keys are episode paths by default (the memory is then :meth:`EpisodeMemory.from_path`); any
other key (a server's frame key, an episode id) comes with the function that opens it.
:func:`keyframe_images` decodes an episode's keyframes as PIL images once for recent calls.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from habitat_eqarm.data.episode import EpisodeMemory

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentlyUsed(Generic[K, V]):
    """A mapping that keeps its ``size`` most recently used values (``None``: all of them).

    Thread-safe for its own bookkeeping; a value is made outside the lock, so two threads
    asking for one missing key at once may both make it (the first one stored is kept). Values
    are never None (None is what :meth:`find` answers for a missing key). Besides the episode
    caches below, the server's judgement memo (``serve/memo.py``) and the review page's JPEGs
    keep their recent entries in one.
    """

    def __init__(self, size: int | None) -> None:
        if size is not None and size < 1:
            raise ValueError(f"a cache keeps at least 1 entry (or None: all), got {size}")
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def find(self, key: K) -> V | None:
        """The value kept for ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._values:
                return None
            self._values.move_to_end(key)
            return self._values[key]

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The value kept for ``key``, made by ``make()`` (and kept) when there is none."""
        found = self.find(key)
        if found is not None:
            return found
        value = make()
        with self._lock:
            if key in self._values:  # another thread made it meanwhile: keep the first
                self._values.move_to_end(key)
                return self._values[key]
            self._put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key`` as the most recently used."""
        with self._lock:
            self._put(key, value)

    def _put(self, key: K, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while self.size is not None and len(self._values) > self.size:
            self._values.popitem(last=False)


class EpisodeCache:
    """Open episode memories by key, the ``size`` most recently used kept (``None``: all).

    ``get(path)`` opens an episode path with :meth:`EpisodeMemory.from_path`; ``get(key,
    open_)`` opens any other key with ``open_()``. Errors of opening (an
    :class:`~habitat_eqarm.data.episode.EpisodeMemoryError` naming the file) reach the caller,
    and nothing is kept for that key.
    """

    def __init__(self, size: int | None = 8) -> None:
        self._open: RecentlyUsed[str, EpisodeMemory] = RecentlyUsed(size)

    @property
    def size(self) -> int | None:
        """How many memories stay open (None: every one)."""
        return self._open.size

    def __contains__(self, key: object) -> bool:
        return key in self._open

    def __len__(self) -> int:
        return len(self._open)

    def get(
        self, key: str | os.PathLike[str], open_: Callable[[], EpisodeMemory] | None = None
    ) -> EpisodeMemory:
        """The memory for ``key``, opened once while it stays among the recent ones."""
        key = os.fspath(key)
        return self._open.get(key, open_ or (lambda: EpisodeMemory.from_path(key)))

    def put(self, key: str | os.PathLike[str], memory: EpisodeMemory) -> None:
        """Keep a memory opened elsewhere (e.g. frames recorded in memory) under ``key``."""
        self._open.put(os.fspath(key), memory)


#: The process's cache behind :func:`keyframe_images`: a few episodes open, their recent
#: keyframe sets decoded.
_SHARED_MEMORIES = EpisodeCache(size=16)
_SHARED_IMAGES: RecentlyUsed[tuple[str, tuple[int, ...]], tuple[Any, ...]] = RecentlyUsed(16)


def keyframe_images(path: str | os.PathLike[str], indices: Sequence[int]) -> tuple[Any, ...]:
    """An episode's frames at ``indices`` as PIL images, decoded once for recent calls.

    For callers that ask for the same keyframes again and again (GRPO holds each prompt G
    times, RFT several targets of one instance); the images are shared, so callers must not
    modify them (copy first).
    """
    key = (os.fspath(path), tuple(int(i) for i in indices))

    def decode() -> tuple[Any, ...]:
        from PIL import Image

        frames = _SHARED_MEMORIES.get(key[0]).frames(list(key[1]))
        return tuple(Image.fromarray(f) for f in frames)

    return _SHARED_IMAGES.get(key, decode)
