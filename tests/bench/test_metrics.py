import math

import numpy as np
import pytest

from habitat_eqarm.bench.metrics import (
    breakdown,
    kendall_tau_b,
    pairwise_preference_accuracy,
    score_metrics,
    spearman,
)


def test_score_metrics_by_hand():
    pred = [8, 5, None, 0, 10]
    gt = [7, 8, 5, 2, 10]
    m = score_metrics(pred, gt, tau=2.0)
    # errors over valid: 1, -3, -2, 0 -> hits at |e| <= 2: 3 of 5 (None is a miss)
    assert m["n"] == 5 and m["n_invalid"] == 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 9 + 4 + 0) / 4))
    assert m["mae"] == pytest.approx(6 / 4)


def test_tau_boundary_is_inclusive():
    assert score_metrics([5], [7], tau=2.0)["accuracy"] == 1.0
    assert score_metrics([5], [8], tau=2.0)["accuracy"] == 0.0


def test_all_invalid():
    m = score_metrics([None, None], [3, 4])
    assert m["accuracy"] == 0.0 and m["rmse"] is None and m["n_invalid"] == 2


def test_correlations_match_textbook_values():
    x = [1, 2, 3, 4, 5]
    assert spearman(x, [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    assert kendall_tau_b(x, [5, 6, 7, 8, 7]) == pytest.approx(0.7378647873726218)
    assert spearman(x, x[::-1]) == pytest.approx(-1.0)
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None  # constant: undefined


def test_correlations_against_a_brute_force_definition():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 30), rng.integers(0, 5, 30)
    conc = disc = tx = ty = 0
    for i in range(30):
        for j in range(i + 1, 30):
            a, b = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            conc += a * b > 0
            disc += a * b < 0
            tx += a == 0 and b != 0
            ty += b == 0 and a != 0
    expected = (conc - disc) / math.sqrt((conc + disc + tx) * (conc + disc + ty))
    assert kendall_tau_b(x, y) == pytest.approx(expected)


def test_breakdown_by_source():
    out = breakdown([7, 1, 5], [7, 9, 5], ["hm3d", "scannet", "hm3d"])
    assert list(out) == ["hm3d", "scannet"]
    assert out["hm3d"]["accuracy"] == 1.0 and out["scannet"]["accuracy"] == 0.0


def test_pairwise_preference_accuracy():
    qids = ["a", "a", "b", "b", "c", "c"]
    gt = [9, 2, 3, 8, 5, 5]  # question c: equal GT, not a pair
    pred = [8, 1, 6, 6, 0, 10]  # a kept order, b tied
    out = pairwise_preference_accuracy(pred, gt, qids)
    assert out == {"accuracy": 0.5, "pairs": 2, "ties": 1}


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="3 predictions for 2"):
        score_metrics([1, 2, 3], [1, 2])
