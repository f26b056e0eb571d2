"""EQARewardBench metrics (spec §7): accuracy within tau, RMSE, and their breakdowns.

A missing prediction (None: the model wrote nothing parsable) counts as a miss for accuracy
and is left out of RMSE, MAE and the correlations; ``n_invalid`` says how many there were, so
parse failures are reported rather than hidden (spec §9).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

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
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} predictions for {len(gt)} ground-truth scores")
    if any(g is None for g in gt):
        raise ValueError("every instance needs a ground-truth score")
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


def breakdown(
    pred: Sequence[Score], gt: Sequence[Score], groups: Sequence[Hashable], tau: float = 2.0
) -> dict[Hashable, dict]:
    """:func:`score_metrics` per group (e.g. source or category), groups in sorted order."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    return {
        g: score_metrics([pred[i] for i in idx], [gt[i] for i in idx], tau)
        for g, idx in sorted(members.items(), key=lambda kv: str(kv[0]))
    }


def pairwise_preference_accuracy(
    pred: Sequence[Score], gt: Sequence[Score], question_ids: Sequence[Hashable]
) -> dict:
    """For two responses to one question with different GT scores, is the order kept?

    Every such pair counts once; a pair where either prediction is None, or the predictions
    tie, counts as a miss (the model did not order them). Returns accuracy, pairs, ties.
    """
    by_question: dict[Hashable, list[int]] = defaultdict(list)
    for i, q in enumerate(question_ids):
        by_question[q].append(i)
    pairs = correct = ties = 0
    for idx in by_question.values():
        for i, j in itertools.combinations(idx, 2):
            if gt[i] == gt[j]:
                continue
            pairs += 1
            if pred[i] is None or pred[j] is None or pred[i] == pred[j]:
                ties += pred[i] is not None and pred[j] is not None
                continue
            correct += (pred[i] > pred[j]) == (gt[i] > gt[j])
    return {"accuracy": correct / pairs if pairs else None, "pairs": pairs, "ties": ties}
