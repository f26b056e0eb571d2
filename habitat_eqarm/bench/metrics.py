"""EQARewardBench metrics (docs/method.md §7): accuracy within tau, RMSE, their breakdowns,
calibration and bootstrap confidence intervals.

A missing prediction (None: the model wrote nothing parsable) counts as a miss for accuracy
and is left out of RMSE, MAE, the correlations and the calibration error; ``n_invalid`` says
how many there were, so parse failures are reported rather than hidden (docs/method.md §9).
A NaN score, predicted or ground truth, is refused with a ValueError: it is a bug upstream,
not a miss.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from habitat_eqarm.data.schema import CORRECT_AT

Score = float | int | None


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_vals[end] != sorted_vals[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); None if undefined."""
    if len(x) < 2:
        return None
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b (accounts for ties in either variable); None if undefined."""
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if len(xa) < 2:
        return None
    dx = np.sign(xa[:, None] - xa[None, :])
    dy = np.sign(ya[:, None] - ya[None, :])
    upper = np.triu_indices(len(xa), k=1)
    dx, dy = dx[upper], dy[upper]
    concordance = float((dx * dy).sum())
    n_x, n_y = float((dx != 0).sum()), float((dy != 0).sum())
    if n_x == 0 or n_y == 0:
        return None
    return concordance / math.sqrt(n_x * n_y)


def score_metrics(pred: Sequence[Score], gt: Sequence[Score], tau: float = 2.0) -> dict:
    """Accuracy (``|pred - gt| <= tau``, None a miss), RMSE, MAE, Spearman, Kendall, counts."""
    _check_scores(pred, gt)
    n = len(gt)
    pairs = [(float(p), float(g)) for p, g in zip(pred, gt, strict=True) if p is not None]
    errors = np.array([p - g for p, g in pairs])
    hits = int((np.abs(errors) <= tau).sum()) if pairs else 0
    out = {
        "n": n,
        "n_invalid": n - len(pairs),
        "accuracy": hits / n if n else None,
        "rmse": float(np.sqrt((errors**2).mean())) if pairs else None,
        "mae": float(np.abs(errors).mean()) if pairs else None,
        "spearman": spearman(*zip(*pairs, strict=True)) if pairs else None,
        "kendall": kendall_tau_b(*zip(*pairs, strict=True)) if pairs else None,
        "tau": tau,
    }
    return out


def _check_scores(pred: Sequence[Score], gt: Sequence[Score]) -> None:
    """Raise ValueError for unequal lengths, a missing ground truth or a NaN score."""
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} predictions for {len(gt)} ground-truth scores")
    if any(g is None for g in gt):
        raise ValueError("every instance needs a ground-truth score")
    if any(math.isnan(g) for g in gt) or any(p is not None and math.isnan(p) for p in pred):
        raise ValueError("a score is NaN; scores must be numbers 0..10 (None for invalid)")


def breakdown(
    pred: Sequence[Score],
    gt: Sequence[Score],
    groups: Sequence[Hashable],
    tau: float = 2.0,
    fn: Callable[[list[Score], list[Score]], dict] | None = None,
) -> dict[Hashable, dict]:
    """``fn(pred, gt)`` per group (e.g. source or category), groups in sorted order.

    ``fn`` defaults to :func:`score_metrics` with ``tau``.
    """
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    fn = fn or (lambda p, g: score_metrics(p, g, tau))
    return {
        g: fn([pred[i] for i in idx], [gt[i] for i in idx])
        for g, idx in sorted(members.items(), key=lambda kv: str(kv[0]))
    }


def _pairs_per_question(
    pred: Sequence[Score], gt: Sequence[Score], question_ids: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per question with at least one pair: (correct, pairs) arrays; and the ties in all."""
    by_question: dict[Hashable, list[int]] = defaultdict(list)
    for i, q in enumerate(question_ids):
        by_question[q].append(i)
    correct, pairs, ties = [], [], 0
    for idx in by_question.values():
        n_pairs = n_correct = 0
        for i, j in itertools.combinations(idx, 2):
            if gt[i] == gt[j]:
                continue
            n_pairs += 1
            if pred[i] is None or pred[j] is None or pred[i] == pred[j]:
                ties += pred[i] is not None and pred[j] is not None
                continue
            n_correct += (pred[i] > pred[j]) == (gt[i] > gt[j])
        if n_pairs:
            correct.append(n_correct)
            pairs.append(n_pairs)
    return np.array(correct, dtype=np.float64), np.array(pairs, dtype=np.float64), ties


def pairwise_preference_accuracy(
    pred: Sequence[Score], gt: Sequence[Score], question_ids: Sequence[Hashable]
) -> dict:
    """For two responses to one question with different GT scores, is the order kept?

    Every such pair counts once; a pair where either prediction is None, or the predictions
    tie, counts as a miss (the model did not order them). Returns accuracy, pairs, ties.
    """
    correct, pairs, ties = _pairs_per_question(pred, gt, question_ids)
    total = int(pairs.sum())
    return {
        "accuracy": float(correct.sum()) / total if total else None,
        "pairs": total,
        "ties": ties,
    }


def expected_calibration_error(
    pred: Sequence[Score], gt: Sequence[Score], n_bins: int = 10, correct_at: float = CORRECT_AT
) -> dict:
    """ECE of ``pred / 10`` read as the confidence that the response is correct.

    The reward model's score says how good the answer is, so its calibration is asked
    against the answer's quality: a response is *correct* iff ``gt >= correct_at`` (default
    5 on the 0..10 scale, the upper half). Confidences fall into ``n_bins`` equal-width bins
    of [0, 1] (bin ``b`` is ``[b/n, (b+1)/n)``, the last one closed); then
    ``ECE = sum_b (n_b / n) * |acc_b - conf_b|`` with ``acc_b`` the share of correct
    responses and ``conf_b`` the mean confidence in bin ``b``. Invalid (None) predictions are
    left out and counted in ``n_invalid``; with no valid prediction ``ece`` is None (n/a).
    Returns ``ece``, ``n``, ``n_invalid``, ``n_bins``, ``correct_at`` and per-bin ``bins``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    _check_scores(pred, gt)
    kept = [(float(p), float(g)) for p, g in zip(pred, gt, strict=True) if p is not None]
    scores = np.array([p for p, _ in kept], dtype=np.float64)
    correct = np.array([g >= correct_at for _, g in kept], dtype=np.float64)
    if ((scores < 0) | (scores > 10)).any():
        raise ValueError("predicted scores must lie in 0..10 to be read as confidences")
    # binned from the score itself, so integer scores never land a bin low by rounding
    index = np.minimum(np.floor(scores * n_bins / 10.0), n_bins - 1).astype(int)
    bins, ece = [], 0.0
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        conf = float(scores[members].mean() / 10.0) if count else None
        acc = float(correct[members].mean()) if count else None
        if count:
            ece += count / len(kept) * abs(acc - conf)
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": count, "confidence": conf})
        bins[-1]["accuracy"] = acc
    return {
        "ece": ece if kept else None,
        "n": len(kept),
        "n_invalid": len(gt) - len(kept),
        "n_bins": n_bins,
        "correct_at": correct_at,
        "bins": bins,
    }


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float | None]:
    """Percentile-bootstrap interval of a statistic over ``n`` units resampled with replacement.

    ``statistic`` maps an index array of shape ``(r, n)`` to ``r`` values (NaN where a
    resample leaves it undefined; those resamples are dropped). Returns ``{"lo", "hi"}``, both
    None when no resample defines it. Seeded with numpy's PCG64: the same inputs, seed and
    resample count give the same interval.
    """
    if not 0 < level < 1:
        raise ValueError(f"the confidence level must lie in (0, 1), got {level}")
    if n == 0 or resamples < 1:
        return {"lo": None, "hi": None}
    rng = np.random.default_rng(seed)
    values = []
    block = max(1, min(resamples, 2**22 // n))  # about 32 MiB of indices at a time
    for start in range(0, resamples, block):
        values.append(statistic(rng.integers(0, n, size=(min(block, resamples - start), n))))
    stats = np.concatenate(values)
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return {"lo": None, "hi": None}
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return {"lo": float(lo), "hi": float(hi)}


def bootstrap_score_ci(
    pred: Sequence[Score],
    gt: Sequence[Score],
    tau: float = 2.0,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap intervals of :func:`score_metrics`' accuracy and RMSE, resampling instances.

    Invalid predictions stay misses for accuracy and out of RMSE inside each resample.
    Returns ``accuracy`` and ``rmse`` (each ``{"lo", "hi"}``), ``level``, ``resamples``, ``seed``.
    """
    _check_scores(pred, gt)
    valid = np.array([p is not None for p in pred], dtype=bool)
    pairs = zip(pred, gt, strict=True)
    errors = np.array([0.0 if p is None else float(p) - float(g) for p, g in pairs])
    hits = (valid & (np.abs(errors) <= tau)).astype(np.float64)
    squared = np.where(valid, errors**2, 0.0)

    def rmse(idx: np.ndarray) -> np.ndarray:
        counts = valid[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(squared[idx].sum(axis=1) / counts)

    args = dict(n=len(gt), resamples=resamples, level=level, seed=seed)
    return {
        "accuracy": bootstrap_interval(lambda idx: hits[idx].mean(axis=1), **args),
        "rmse": bootstrap_interval(rmse, **args),
        "level": level,
        "resamples": resamples,
        "seed": seed,
    }


def bootstrap_pairwise_ci(
    pred: Sequence[Score],
    gt: Sequence[Score],
    question_ids: Sequence[Hashable],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap interval of :func:`pairwise_preference_accuracy`, resampling questions.

    Pairs are built within a question, so the unit resampled is the question (those with at
    least one pair), not the instance: resampling instances would pair a response with itself.
    """
    correct, pairs, _ = _pairs_per_question(pred, gt, question_ids)

    def accuracy(idx: np.ndarray) -> np.ndarray:
        return correct[idx].sum(axis=1) / pairs[idx].sum(axis=1)

    interval = bootstrap_interval(accuracy, len(pairs), resamples, level, seed)
    return {"accuracy": interval, "level": level, "resamples": resamples, "seed": seed}
