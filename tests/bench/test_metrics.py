import math

import numpy as np
import pytest

from habitat_eqarm.bench.metrics import (
    bootstrap_pairwise_ci,
    bootstrap_score_ci,
    breakdown,
    expected_calibration_error,
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


def test_ece_of_a_perfectly_calibrated_set_is_zero():
    # score 5 (confidence 0.5): half correct; score 10: all correct; score 0: none correct
    pred = [5, 5, 5, 5, 10, 10, 0, 0]
    gt = [9, 5, 4, 0, 7, 10, 4, 1]
    out = expected_calibration_error(pred, gt)
    assert out["ece"] == 0.0 and out["n"] == 8 and out["n_invalid"] == 0


def test_ece_of_a_miscalibrated_set_by_hand():
    # correct iff gt >= 5: [1, 1, 0, 0, 1, 0]; None is left out
    pred = [9, 10, 9, 10, 2, 3, None]
    gt = [8, 8, 3, 1, 6, 0, 9]
    out = expected_calibration_error(pred, gt)
    # bin [0.9, 1]: 9, 10, 9, 10 -> conf 0.95, acc 0.5; bin 2: conf 0.2, acc 1; bin 3: 0.3, 0
    # ECE = 4/6 * 0.45 + 1/6 * 0.8 + 1/6 * 0.3 = 0.3 + 0.8/6 + 0.05 = 29/60
    assert out["ece"] == pytest.approx(29 / 60, rel=1e-12)
    assert out["n"] == 6 and out["n_invalid"] == 1 and out["correct_at"] == 5.0
    bins = {b["lo"]: b for b in out["bins"] if b["n"]}
    assert [round(lo, 1) for lo in bins] == [0.2, 0.3, 0.9]
    assert bins[0.9]["n"] == 4 and bins[0.9]["confidence"] == pytest.approx(0.95)
    assert bins[0.9]["accuracy"] == 0.5 and out["bins"][0]["accuracy"] is None
    # the threshold moves what counts as correct: at gt >= 9 no response is correct
    strict = expected_calibration_error(pred, gt, correct_at=9)
    assert strict["ece"] == pytest.approx((4 * 0.95 + 0.2 + 0.3) / 6, rel=1e-12)


def test_ece_bins_and_bad_input():
    # two bins: [0, 0.5) and [0.5, 1]; score 5 is the first score of the upper bin
    out = expected_calibration_error([4, 5], [0, 9], n_bins=2)
    assert [b["n"] for b in out["bins"]] == [1, 1]
    assert out["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.5)
    none_valid = expected_calibration_error([None, None], [3, 8])
    assert none_valid["ece"] is None and none_valid["n_invalid"] == 2  # documented n/a
    assert expected_calibration_error([], [])["ece"] is None
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error([5.0], [float("nan")])
    with pytest.raises(ValueError, match="NaN"):
        score_metrics([float("nan")], [5])
    with pytest.raises(ValueError, match="ground-truth score"):
        expected_calibration_error([5], [None])
    with pytest.raises(ValueError, match=r"0\.\.10"):
        expected_calibration_error([11], [5])


def _noisy(n: int, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 11, n)
    pred = np.clip(gt + rng.integers(-4, 5, n), 0, 10).tolist()
    pred[::10] = [None] * len(pred[::10])
    return pred, gt.tolist()


def test_bootstrap_interval_holds_the_estimate_and_is_seeded():
    pred, gt = _noisy(200, 0)
    point = score_metrics(pred, gt)
    ci = bootstrap_score_ci(pred, gt, resamples=500, seed=3)
    assert ci["accuracy"]["lo"] <= point["accuracy"] <= ci["accuracy"]["hi"]
    assert ci["rmse"]["lo"] <= point["rmse"] <= ci["rmse"]["hi"]
    assert ci["accuracy"]["lo"] < ci["accuracy"]["hi"]
    assert ci == bootstrap_score_ci(pred, gt, resamples=500, seed=3)
    assert ci != bootstrap_score_ci(pred, gt, resamples=500, seed=4)
    assert ci["level"] == 0.95 and ci["resamples"] == 500 and ci["seed"] == 3


def test_bootstrap_interval_shrinks_with_more_data():
    widths = []
    for n in (100, 2500):
        pred, gt = _noisy(n, 1)
        ci = bootstrap_score_ci(pred, gt)
        widths.append([ci[m]["hi"] - ci[m]["lo"] for m in ("accuracy", "rmse")])
    (acc_small, rmse_small), (acc_big, rmse_big) = widths
    # the standard error falls as 1/sqrt(n): 25x the data, about a fifth of the width
    assert acc_big < acc_small / 3 and rmse_big < rmse_small / 3


def test_bootstrap_edge_cases_give_none_not_a_crash():
    empty = bootstrap_score_ci([], [])
    assert empty["accuracy"] == {"lo": None, "hi": None}
    invalid = bootstrap_score_ci([None, None, None], [1, 2, 3])
    assert invalid["accuracy"] == {"lo": 0.0, "hi": 0.0} and invalid["rmse"]["lo"] is None
    assert bootstrap_score_ci([1, 2], [1, 2], resamples=0)["rmse"] == {"lo": None, "hi": None}
    with pytest.raises(ValueError, match="confidence level"):
        bootstrap_score_ci([1], [1], level=1.0)


def test_pairwise_bootstrap_resamples_questions():
    rng = np.random.default_rng(2)
    qids = [q for q in range(60) for _ in range(3)]
    gt = rng.integers(0, 11, 180).tolist()
    pred = [g if rng.random() < 0.7 else 10 - g for g in gt]
    point = pairwise_preference_accuracy(pred, gt, qids)["accuracy"]
    ci = bootstrap_pairwise_ci(pred, gt, qids, seed=0)
    assert ci["accuracy"]["lo"] <= point <= ci["accuracy"]["hi"]
    assert ci == bootstrap_pairwise_ci(pred, gt, qids, seed=0)
    no_pairs = bootstrap_pairwise_ci([1, 2], [5, 5], ["a", "a"])
    assert no_pairs["accuracy"] == {"lo": None, "hi": None}
