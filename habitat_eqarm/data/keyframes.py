"""Keyframe selection over an :class:`EpisodeMemory` (the paper uses N = 5 keyframes).

Methods:

* ``"uniform"``: OpenEQA's rule, ``round(linspace(0, len - 1, n))``.
* ``"diverse"``: binned maximin on downscaled frames. The episode is cut into ``n`` equal time
  bins and one frame is taken from each, as with ``"uniform"``, so no part of the walk is left
  out; within its bin each pick is then moved to the frame whose smallest distance (mean
  absolute pixel difference of 32x18 thumbnails) to the other picks is largest. Repeated views
  of one spot are avoided without the picks bunching up where the video changes fastest (pure
  farthest-point sampling did that on OpenEQA's demo video: 3 of 5 picks at one window).
  Candidates are at most ``max_candidates`` evenly spaced frames, so a 10,000-frame episode
  costs what a 256-frame one does.

Asking for more keyframes than the memory has frames returns every frame once (fewer than
``n`` indices); pass ``strict=True`` to raise instead. Indices are always sorted ascending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from habitat_eqarm.data.episode import EpisodeMemory

METHODS = ("uniform", "diverse")


def uniform_indices(length: int, n: int) -> list[int]:
    """OpenEQA's keyframe rule: ``round(linspace(0, length - 1, n))`` (numpy rounding)."""
    if length <= 0:
        raise ValueError("cannot pick keyframes from an empty episode")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if n >= length:
        return list(range(length))
    return [int(i) for i in np.round(np.linspace(0, length - 1, n))]


def binned_maximin(features: np.ndarray, n: int, max_passes: int = 5) -> list[int]:
    """One row per equal time bin, each moved within its bin to be far from the others.

    Starts from the uniform picks and, bin by bin, moves each pick to the row of its bin whose
    minimum distance (mean absolute difference) to the other picks is largest, with the mean
    distance as a small tie-break, until a pass changes nothing. Returns rows in time order.
    """
    count = len(features)
    n = min(n, count)
    edges = np.round(np.linspace(0, count, n + 1)).astype(int)
    picks = [
        int(np.clip(u, edges[b], edges[b + 1] - 1)) for b, u in enumerate(uniform_indices(count, n))
    ]
    for _ in range(max_passes):
        changed = False
        for b in range(n):
            others = features[[p for j, p in enumerate(picks) if j != b]]
            cand = features[edges[b] : edges[b + 1]]
            dist = np.abs(cand[:, None, :] - others[None, :, :]).mean(axis=2)
            score = dist.min(axis=1) + 1e-3 * dist.mean(axis=1)
            best = edges[b] + int(np.argmax(score))
            if score[best - edges[b]] > score[picks[b] - edges[b]]:
                picks[b], changed = best, True
        if not changed:
            break
    return picks


def diverse_indices(
    memory: EpisodeMemory,
    n: int,
    *,
    thumb_size: tuple[int, int] = (32, 18),
    max_candidates: int = 256,
) -> list[int]:
    """Content-aware keyframes by binned maximin on thumbnails (see module doc)."""
    candidates = uniform_indices(len(memory), max_candidates)
    if n >= len(candidates):
        return candidates
    thumbs = memory.thumbnails(candidates, size=thumb_size)
    features = thumbs.reshape(len(thumbs), -1).astype(np.float32) / 255.0
    return [candidates[r] for r in binned_maximin(features, n)]


def select_keyframes(
    memory: EpisodeMemory, n: int = 5, method: str = "uniform", *, strict: bool = False, **kwargs
) -> list[int]:
    """Pick ``n`` keyframe indices of ``memory`` with ``method`` (``"uniform"`` or ``"diverse"``).

    With ``n`` greater than the number of frames every frame is returned once, unless
    ``strict=True``, which raises ``ValueError``.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if strict and n > len(memory):
        raise ValueError(f"asked for {n} keyframes but {memory!r} has only {len(memory)} frames")
    if method == "uniform":
        return uniform_indices(len(memory), n)
    if method == "diverse":
        return diverse_indices(memory, n, **kwargs)
    raise ValueError(f"unknown keyframe method {method!r}; choose one of {', '.join(METHODS)}")


def view_spread(thumbnails: np.ndarray) -> dict[str, float]:
    """How distinct a set of frames is: mean and min pairwise mean-absolute pixel distance (0..1).

    Also a colour-histogram distance (total variation over 8x8x8 RGB bins), a feature the
    ``diverse`` method does not optimise, so it checks the spread independently.
    """
    feats = thumbnails.reshape(len(thumbnails), -1).astype(np.float32) / 255.0
    bins = (thumbnails.reshape(len(thumbnails), -1, 3) // 32).astype(np.int64)
    codes = bins[..., 0] * 64 + bins[..., 1] * 8 + bins[..., 2]
    hists = np.stack([np.bincount(c, minlength=512) / len(c) for c in codes])
    pix, hist = [], []
    for i in range(len(feats)):
        for j in range(i + 1, len(feats)):
            pix.append(float(np.abs(feats[i] - feats[j]).mean()))
            hist.append(float(0.5 * np.abs(hists[i] - hists[j]).sum()))
    if not pix:
        return {
            "mean_pixel_distance": 0.0,
            "min_pixel_distance": 0.0,
            "mean_histogram_distance": 0.0,
        }
    return {
        "mean_pixel_distance": float(np.mean(pix)),
        "min_pixel_distance": float(np.min(pix)),
        "mean_histogram_distance": float(np.mean(hist)),
    }
