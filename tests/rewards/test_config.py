"""`ScoringConfig`: one declaration of every scoring setting, and what is built from it."""

import dataclasses
import typing

import pytest

from habitat_eqarm.envs import EMEQAEnv
from habitat_eqarm.envs.agents import ScriptedAgent
from habitat_eqarm.rewards.backends.base import SamplingParams
from habitat_eqarm.rewards.config import (
    BOUNDS,
    KeyframeOptions,
    SamplingOptions,
    ScoringConfig,
    VoteOptions,
    field_names,
    generated_fields,
)
from habitat_eqarm.rewards.episode_scoring import RewardShaping
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.wrapper import EQARMReward


def test_options_replace_fields_of_a_base_config_and_unknown_ones_are_named():
    base = ScoringConfig(k=4, temperature=0.5)
    cfg = ScoringConfig.from_options(base, seed=3)
    assert (cfg.k, cfg.temperature, cfg.seed) == (4, 0.5, 3) and base.seed is None
    with pytest.raises(TypeError, match="'tempreature'"):
        ScoringConfig.from_options(base, tempreature=0.1)


@pytest.mark.parametrize(
    "bad, match",
    [({"answer_source": "answer"}, "obs.KEY"), ({"reward_mode": "log"}, "normalized")],
)
def test_a_bad_source_or_reward_mode_fails_on_construction(bad, match):
    with pytest.raises(ValueError, match=match):
        ScoringConfig(**bad)


def test_backend_sampling_and_shaping_come_from_the_config():
    cfg = ScoringConfig(k=3, temperature=0.2, top_p=0.7, max_new_tokens=9, seed=5)
    assert cfg.sampling_params() == SamplingParams(3, 0.2, 0.7, 9, 5)
    assert cfg.sampling_params(k=1).k == 1
    # every backend sampling setting is a ScoringConfig setting of the same name
    assert {f.name for f in dataclasses.fields(SamplingParams)} <= set(field_names())
    shaping = RewardShaping.from_config(ScoringConfig(reward_mode="raw", reward_scale=2.0))
    assert shaping.reward(7.0, 1.0) == 14.0
    assert cfg.sources()["answer"] == "info.answer"


def test_sections_partition_the_config():
    names = field_names()
    assert len(names) == len(set(names)) and set(BOUNDS) <= set(names)
    assert set(field_names(SamplingOptions, VoteOptions, KeyframeOptions)) < set(names)
    held = ScoringConfig.of({"k": 2, "other": 1})  # a mapping (a Hydra node) or an object
    assert held.k == 2 and held == ScoringConfig.of(held) != ScoringConfig()
    only_votes = ScoringConfig.of({"k": 3, "num_keyframes": 2}, VoteOptions)
    assert (only_votes.k, only_votes.num_keyframes) == (3, 5)


def test_wrapper_from_a_config_is_the_wrapper_from_its_keyword_arguments(tiny_model_path):
    options = dict(k=2, max_new_tokens=6, seed=0, reward_scale=2.0)
    with EQARewardModel.from_pretrained(str(tiny_model_path)) as rm:
        rewards, specs = [], []
        for kwargs in (options, {"config": ScoringConfig(**options)}):
            env = EQARMReward(
                EMEQAEnv("synthetic", mode="episodic"), rm, info_timings=False, **kwargs
            )
            agent, (obs, info) = ScriptedAgent(), env.reset(seed=1)
            agent.reset()
            done = False
            while not done:
                obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
                done = terminated or truncated
            rewards.append(reward)
            specs.append({k: v for k, v in env._saved_kwargs.items() if k != "reward_model"})
    assert rewards[0] == rewards[1] and specs[0] == specs[1]
    assert specs[0]["reward_scale"] == 2.0 and "config" not in specs[0]


@dataclasses.dataclass(kw_only=True)
class NewSection:
    """A setting someone adds to a section."""

    beams: int | None = dataclasses.field(default=2, metadata={"help": "beams"})


def test_generated_configs_carry_a_new_field_with_its_default_and_help():
    made = dataclasses.make_dataclass(
        "Made", generated_fields(VoteOptions, NewSection, exclude=("aggregate",))
    )
    assert [f.name for f in dataclasses.fields(made)] == ["k", "beams"]
    beams = dataclasses.fields(made)[1]
    assert made().beams == 2 and beams.metadata["help"] == "beams"
    assert beams.type == typing.Optional[int]  # noqa: UP045 - the form OmegaConf reads
