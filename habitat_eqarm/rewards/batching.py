"""The one "call the batch, on failure each item alone" loop of long runs.

A long run (``eqarm eval``'s sampling, the bench stages' backend calls) sends its items in
batches for speed, but one bad item (an unreadable frame, a prompt the backend rejects) must
cost only itself: :func:`batch_or_each` calls the whole batch, and if that raises, each item
alone; an item that fails alone gets its exception in its slot, for the caller to report and
skip (:func:`~habitat_eqarm.rewards.sample_cache.sample_all` records it as a failure, a bench
stage as a skipped item that a re-run asks for again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def batch_or_each(
    call: Callable[[list[T]], Sequence[R]], items: Sequence[T]
) -> list[R | Exception]:
    """``call(items)``, one result per item; if it raises, ``call([item])`` for each item.

    The slot of an item whose call alone raises holds that exception. ``call`` must return
    one result per item it is given, in order.
    """
    items = list(items)
    try:
        return list(call(items))
    except Exception as err:  # one bad item must not cost the batch: each alone
        if len(items) == 1:
            return [err]
        return [batch_or_each(call, [item])[0] for item in items]
