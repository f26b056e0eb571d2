"""C-GRPO's perturbations (spec §4): pure, seeded functions on frames and reasoning traces.

* temporal ``v^t``: :func:`shuffle_frames`, the keyframes in another order;
* spatial ``v^s``: :func:`mask_frames`, 16x16-pixel squares set to 0.0 over 15 % of each frame;
* reasoning ``z^r``: :func:`jumble_reasoning`, the trace's steps in another order.

**[ours]** A perturbation must differ from the original: permutations are redrawn until they
are not the identity. With fewer than 2 frames (or steps) there is no other order, so the
contrast is inactive: the function returns None and the trainer logs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")
Seed = int | np.random.Generator | None

CONDITIONS = ("temporal", "spatial", "reasoning")


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def non_identity_permutation(n: int, seed: Seed = None) -> np.ndarray | None:
    """A uniformly random permutation of ``range(n)`` other than the identity; None if n < 2."""
    if n < 2:
        return None
    rng = _rng(seed)
    while True:
        perm = rng.permutation(n)
        if not np.array_equal(perm, np.arange(n)):
            return perm


def shuffle_frames(frames: np.ndarray, seed: Seed = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The frames ``(N, ...)`` in a non-identity order, and that order; None if N < 2."""
    perm = non_identity_permutation(len(frames), seed)
    if perm is None:
        return None
    return np.asarray(frames)[perm], perm


def mask_frames(
    frames: np.ndarray,
    seed: Seed = None,
    *,
    fraction: float = 0.15,
    patch: int = 16,
    value: float = 0.0,
) -> np.ndarray:
    """A copy of ``frames (N, H, W, C)`` with ``patch x patch`` squares set to ``value``.

    Each frame gets its own random squares, on the ``patch``-pixel grid and without overlap,
    as many as bring the masked area closest to ``fraction`` of the frame (at least one).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must be (N, H, W, C), got shape {frames.shape}")
    n, h, w = frames.shape[:3]
    rows, cols = h // patch, w // patch
    if rows == 0 or cols == 0:
        raise ValueError(f"frames of {h}x{w} pixels are smaller than one {patch}x{patch} square")
    count = max(1, round(fraction * h * w / (patch * patch)))
    count = min(count, rows * cols)
    rng = _rng(seed)
    out = frames.copy()
    for i in range(n):
        for cell in rng.choice(rows * cols, size=count, replace=False):
            r, c = divmod(int(cell), cols)
            out[i, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = value
    return out


def jumble_reasoning(steps: Sequence[T], seed: Seed = None) -> list[T] | None:
    """The reasoning steps in a non-identity order; None with fewer than 2 steps.

    The order of positions always changes; if steps repeat word for word, the text may not.
    """
    perm = non_identity_permutation(len(steps), seed)
    if perm is None:
        return None
    return [steps[int(i)] for i in perm]
