"""Contract: the TRL internals behind trl_compat keep the shape we rely on, checked without
training (by reading TRL's source and calling the hooks on a bare trainer object)."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import trl
from trl import GRPOTrainer

from habitat_eqarm.training import trl_compat as compat
from habitat_eqarm.training.trl_compat import GENERATE_FIELDS, GRPOHooks, TRLChanged

CHANGED = rf"trl {trl.__version__}: .*needs updating"


def test_the_overridden_methods_exist_with_our_parameters():
    compat.check_overrides()


def test_generate_returns_the_fields_we_index_in_that_order():
    compat.check_generate_fields()
    assert GENERATE_FIELDS.index("completions") == 3 and len(GENERATE_FIELDS) == 8


def test_reward_names_weights_and_metrics_are_used_as_we_assume():
    compat.check_reward_attributes()
    compat.check_trl()


def test_trls_private_hooks_reach_our_named_ones():
    calls = []

    class Hooked(GRPOHooks):
        def generate_and_score_completions(self, inputs):
            calls.append(("step", inputs))
            return {}

        def generate_completions(self, prompts):
            calls.append(("generate", prompts))
            return ()

        def calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            calls.append(("rewards", inputs, prompts, completions, completion_ids_list))
            return torch.zeros(0)

    trainer = object.__new__(Hooked)  # the routing needs no model
    trainer._generate_and_score_completions(["row"])
    trainer._generate(["p"])
    trainer._calculate_rewards(["row"], ["p"], ["c"], [[1]])
    assert calls == [
        ("step", ["row"]),
        ("generate", ["p"]),
        ("rewards", ["row"], ["p"], ["c"], [[1]]),
    ]


def test_generated_rows_are_read_and_cut_by_field():
    out = (["p1", "p2", "x"], ["c1", "c2", "x"], None, ["t1", "t2", "x"], None, {}, None, [])
    assert compat.completions_of(out) == ["t1", "t2", "x"]
    cut = compat.first_rows(out, 2, 3)
    assert cut == (["p1", "p2"], ["c1", "c2"], None, ["t1", "t2"], None, {}, None, [])


def test_extra_reward_columns_are_named_weighted_and_hidden_from_trls_zip():
    trainer = SimpleNamespace(
        reward_funcs=[len, len],
        reward_func_names=["accuracy_reward", "format_reward"],
        reward_weights=torch.ones(2),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    compat.add_reward_columns(trainer, ["boost_temporal"], torch.tensor([1 / 3]))
    assert trainer.reward_func_names[-1] == "boost_temporal"
    assert torch.allclose(trainer.reward_weights, torch.tensor([1, 1, 1 / 3]))
    with compat.own_reward_names(trainer):
        assert trainer.reward_func_names == ["accuracy_reward", "format_reward"]
    assert len(trainer.reward_func_names) == 3
    compat.log_metric(trainer, "cgrpo/x", 0.5)
    assert trainer._metrics["train"]["cgrpo/x"] == [0.5]


def _generate_with_seven_fields(self, prompts: list):
    prompt_ids = completion_ids = tool_mask = completions = logprobs = images = tool_images = []
    return prompt_ids, completion_ids, tool_mask, logprobs, completions, images, tool_images


def test_a_changed_trl_is_named_with_its_version(monkeypatch):
    monkeypatch.setattr(GRPOTrainer, "_generate", _generate_with_seven_fields)
    with pytest.raises(TRLChanged, match=CHANGED) as err:
        compat.check_generate_fields()
    assert "_generate returns ('prompt_ids', 'completion_ids', 'tool_mask', 'logprobs'" in str(
        err.value
    )
    monkeypatch.setattr(GRPOTrainer, "_calculate_rewards", lambda self, inputs, prompts: None)
    with pytest.raises(TRLChanged, match=CHANGED + ""):
        compat.check_overrides()
    monkeypatch.delattr(GRPOTrainer, "_calculate_rewards")
    with pytest.raises(TRLChanged, match="_calculate_rewards no longer exists"):
        compat.check_overrides()
