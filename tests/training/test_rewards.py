import pickle

import pytest
import torch

from habitat_eqarm.training.rewards import (
    AccuracyReward,
    FormatReward,
    accuracy_reward,
    cgrpo_terms,
    cgrpo_total_rewards,
    format_reward,
    group_advantages,
    rejective_filter,
)

GOOD = "<critique>Grounded.</critique><score>7</score>"


@pytest.mark.parametrize(
    ("score", "gt", "expected"),
    [(7, 9, 0.96), (8, 8, 1.0), (0, 10, 0.0), (10, 0, 0.0), (None, 5, 0.0), (5, 8, 0.91)],
)
def test_accuracy_reward_eq3(score, gt, expected):
    assert accuracy_reward(score, gt) == pytest.approx(expected)


def test_format_reward():
    assert format_reward(GOOD) == 1.0
    assert format_reward("Score: 7") == 0.0
    assert format_reward(GOOD + " thanks") == 0.0


def test_rejective_filter_eq1():
    assert rejective_filter([7, 5, None, 9], s_gt=8, tau=2) == [True, False, False, True]
    assert rejective_filter([6, 10], s_gt=8, tau=2) == [False, False]  # strict: |2| is not < 2
    assert rejective_filter([7, 8, 9], s_gt=8, tau=2) == [False, False, False]  # too easy
    assert rejective_filter([], s_gt=8, tau=2) == []


def test_cgrpo_total_rewards_by_hand():
    # originals: accuracies 1.0, 0.91, 0 (malformed), 0.99 -> group mean 0.725
    # temporal mean 0.82: 0.725 < 0.95 * 0.82 -> no boost
    # spatial mean 0.60: 0.725 >= 0.57 -> boost 0.3 where accuracy >= 0.1
    terms = cgrpo_terms([8, 5, None, 9], 8, {"temporal": [2, 8], "spatial": [0, 4]})
    assert terms.group_means["original"] == pytest.approx(0.725)
    assert terms.boosts["temporal"] == [0.0] * 4
    assert terms.boosts["spatial"] == [0.3, 0.3, 0.0, 0.3]
    assert "reasoning" not in terms.boosts  # inactive: contributes 0
    expected = [1 + 1 + 0.1, 0.91 + 1 + 0.1, 0.0, 0.99 + 1 + 0.1]
    total = cgrpo_total_rewards([8, 5, None, 9], 8, {"temporal": [2, 8], "spatial": [0, 4]})
    assert total == pytest.approx(expected)


def test_all_contrasts_off_is_accuracy_plus_format():
    assert cgrpo_total_rewards([8, None], 8, {}) == [2.0, 0.0]


def test_without_the_gate_a_uniform_boost_cancels_in_the_advantages():
    orig, gt, perturbed = [8, 0, 7, 6], 8, {"reasoning": [0, 1]}
    plain = group_advantages(cgrpo_total_rewards(orig, gt, {}))
    ungated = group_advantages(cgrpo_total_rewards(orig, gt, perturbed, h_min=0.0))
    assert ungated == pytest.approx(plain, abs=1e-6)  # the same +mu/3 for all: no signal
    gated = group_advantages(cgrpo_total_rewards(orig, gt, perturbed, h_min=0.5))
    assert gated != pytest.approx(plain, abs=1e-3)  # the gate withholds it from 0 (acc 0.36)
    assert gated[1] < plain[1]


def test_group_advantages_match_torch():
    rewards = [2.1, 2.01, 0.0, 2.09, 1.5]
    r = torch.tensor(rewards, dtype=torch.float64)
    expected = ((r - r.mean()) / (r.std() + 1e-4)).tolist()
    assert group_advantages(rewards) == pytest.approx(expected)
    assert group_advantages([1.0, 1.0]) == [0.0, 0.0]
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages([1.0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown condition"):
        cgrpo_total_rewards([1], 1, {"colour": [1]})
    with pytest.raises(ValueError, match="active but has no evaluations"):
        cgrpo_total_rewards([1], 1, {"temporal": []})
    with pytest.raises(ValueError, match="at least one"):
        cgrpo_total_rewards([], 1, {})


def test_trl_reward_functions_are_picklable_and_read_conversations():
    acc, fmt = (
        pickle.loads(pickle.dumps(AccuracyReward())),
        pickle.loads(pickle.dumps(FormatReward())),
    )
    assert (acc.__name__, fmt.__name__) == ("accuracy_reward", "format_reward")
    conversation = [{"role": "assistant", "content": GOOD}]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]
    completions = [GOOD, conversation, parts, "Score: 7"]
    assert acc(["p"] * 4, completions, gt_score=[9, 7, 8, 7]) == pytest.approx([0.96, 1, 0.99, 0])
    assert fmt(["p"] * 4, completions) == [1.0, 1.0, 1.0, 0.0]
    with pytest.raises(KeyError, match="gt_score"):
        acc(["p"], [GOOD])
