"""The value-head trainer: its losses, its groups, the CLI, and that it learns on a toy."""

import json
import math
from pathlib import Path

import pytest
import torch

from habitat_eqarm.cli.main import main
from habitat_eqarm.data import write_jsonl
from habitat_eqarm.testing.learning import value_head_config, value_head_effect
from habitat_eqarm.testing.toy import make_toy_preference_set
from habitat_eqarm.training.value_head import (
    ValueHeadScorer,
    bradley_terry_loss,
    listwise_loss,
    load_groups,
    pair_counts,
    train_value_head,
)
from habitat_eqarm.training.value_head_config import ValueHeadConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
f64 = dict(dtype=torch.float64)


def test_bradley_terry_loss_averages_the_ordered_pairs():
    scores = torch.tensor([2.0, 0.0, 1.0], **f64, requires_grad=True)
    gt = torch.tensor([9.0, 1.0, 1.0], **f64)  # pairs (0, 1), (0, 2); the 1-1 tie is no pair
    loss = bradley_terry_loss(scores, gt)
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)  # float64: exact to rounding
    loss.backward()
    assert scores.grad[0] < 0 < scores.grad[1]  # descent raises the better, lowers the worse
    none = bradley_terry_loss(scores, torch.tensor([5.0, 5.0, 5.0], **f64))
    assert none.item() == 0.0 and none.requires_grad


def test_listwise_loss_is_listnet_cross_entropy():
    scores = torch.tensor([1.0, 0.0], **f64)
    gt = torch.tensor([2.0, 0.0], **f64)
    target = torch.softmax(gt / 2.0, 0)
    expected = -(target * torch.log_softmax(scores, 0)).sum().item()
    assert listwise_loss(scores, gt, temperature=2.0).item() == pytest.approx(expected, rel=1e-12)
    assert listwise_loss(gt, gt, 1.0) < listwise_loss(-gt, gt, 1.0)  # right order costs less


def test_pair_counts_count_ties_as_misses():
    assert pair_counts([3.0, 1.0, 1.0], [9, 5, 1]) == (2, 3)
    assert pair_counts([1.0, 1.0], [5, 5]) == (0, 0)


def test_groups_are_split_and_groups_without_a_pair_dropped(tmp_path):
    from habitat_eqarm.data import read_jsonl

    instances = read_jsonl(make_toy_preference_set(tmp_path))
    same = instances[0:3]
    for inst in same:
        inst.gt_score = 5  # one question whose answers all score alike: nothing to rank
    path = write_jsonl(tmp_path / "x.jsonl", instances)
    groups = load_groups(str(path), None, max_responses=2)
    assert len(groups) == 8  # 8 questions x 3 answers, in chunks of 2 and 1; singles dropped
    assert all(len({i.gt_score for i in g}) == 2 for g in groups)


@pytest.mark.parametrize("loss", ["bradley_terry", "listwise"])
def test_value_head_learns_to_rank_held_out_answers(tiny_model_path, tmp_path, loss):
    """Held-out pairwise accuracy after training minus an lr-0 control's, 5 seeds each.

    Measured per seed (docs/testing.md): Bradley-Terry 0.89 for all 5, listwise 0.89 .. 1.00;
    the threshold, 0.4, is under half the smallest (0.89 / 2 = 0.44).
    """
    runs = [value_head_effect(tmp_path / str(s), tiny_model_path, s, loss=loss) for s in range(5)]
    assert all(run["control"] == 0.0 for run in runs)  # a zero head ties every pair
    assert min(run["effect"] for run in runs) >= 0.4, runs


def test_cli_trains_saves_and_reloads(tiny_model_path, tmp_path):
    data = make_toy_preference_set(tmp_path / "toy")
    out = tmp_path / "vh"
    args = ["train", "value-head", "--config", str(CONFIGS / "value_head.yaml")]
    args += ["--model_name_or_path", str(tiny_model_path), "--data", str(data), "--eval_data"]
    args += [str(data), "--output_dir", str(out), "--loss", "listwise", "--epochs", "2"]
    args += ["--num_keyframes", "2", "--max_pixels", "20000", "--dtype", "float32"]
    args += ["--learning_rate", "0.03"]
    assert main(args) == 0
    info = json.loads((out / "value_head.json").read_text())
    assert info["metrics"]["groups"] == 9 and info["metrics"]["loss"] == "listwise"
    assert len(info["metrics"]["epoch_losses"]) == 2
    scorer = ValueHeadScorer.load(out, device="cpu", dtype="float32")
    groups = load_groups(str(data), None, 8)
    scores = scorer.score_groups(groups[:2])
    assert [len(s) for s in scores] == [3, 3] and len(set(scores[0])) == 3
    held = info["metrics"]["eval_pairwise"]
    assert held["pairs"] == 27 and held == info["metrics"]["train_pairwise"]  # same data


def test_fine_tuning_the_backbone_saves_it(tiny_model_path, tmp_path):
    data = make_toy_preference_set(tmp_path / "toy")
    cfg = value_head_config(tmp_path / "ft", tiny_model_path, data, data, epochs=1)
    cfg.train_backbone = True
    train_value_head(cfg)
    info = json.loads((tmp_path / "ft" / "value_head.json").read_text())
    assert info["backbone"] == str(tmp_path / "ft") and (tmp_path / "ft" / "config.json").is_file()
    scorer = ValueHeadScorer.load(tmp_path / "ft", device="cpu")
    assert len(scorer.score_groups(load_groups(str(data), None, 8)[:1])[0]) == 3


def test_bad_input_is_refused(tiny_model_path, tmp_path):
    from habitat_eqarm.data import read_jsonl

    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        ValueHeadConfig(loss="hinge")
    with pytest.raises(ValueError, match="needs --data"):
        train_value_head(ValueHeadConfig(output_dir=str(tmp_path)))
    instances = read_jsonl(make_toy_preference_set(tmp_path / "toy"))
    instances[1].predicted_answer = "red<|endoftext|>"
    path = write_jsonl(tmp_path / "bad.jsonl", instances[:3])
    cfg = value_head_config(tmp_path / "o", tiny_model_path, path, path, epochs=1)
    with pytest.raises(ValueError, match=r"4 end tokens for 3 responses"):
        train_value_head(cfg)
