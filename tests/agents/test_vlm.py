"""The VLM agent: the policy API, its answers and revisions, and a bad reply never crashing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from habitat_eqarm.agents.vlm import VLMAgent
from habitat_eqarm.data.schema import EQAInstance
from habitat_eqarm.data.synthetic import make_synthetic_episode
from habitat_eqarm.envs import ANSWER, CONTINUE, EMEQAEnv, Policy, ScriptedAgent, play_episode
from habitat_eqarm.rewards.backends.base import load_backend
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.wrapper import REVISE, EQARMReward

from .conftest import DOUBLE, WRONG

SMALL = {"max_pixels": 20_000}


@pytest.fixture()
def double(synthetic_answers):
    return load_backend(DOUBLE, str(synthetic_answers))


def test_every_agent_is_a_policy(double):
    assert isinstance(ScriptedAgent(), Policy)
    assert isinstance(VLMAgent(double), Policy)


def test_tiny_model_agent_answers_with_a_valid_action(tiny_model_path, caplog):
    """The real hf path with the tiny Qwen2-VL: a reply of noise still gives a valid action."""
    env = EMEQAEnv("synthetic", mode="episodic", num_keyframes=3)
    with VLMAgent(str(tiny_model_path), backend_kwargs=SMALL, max_new_tokens=8, seed=0) as agent:
        obs, info = env.reset(seed=0)
        agent.reset()
        with caplog.at_level(logging.WARNING, logger="habitat_eqarm.agents.vlm"):
            action = agent.act(obs, info)
        out = agent.last_output
    assert action["kind"] == ANSWER and env.action_space.contains(action)
    assert out["prompt_id"] == "eqarm-gen-v1" and isinstance(out["text"], str)
    assert (action["answer"] == "") == (out["answer"] is None) == (out["reason"] is not None)
    if out["reason"]:
        assert out["reason"] in caplog.text
    assert env.step(action)[2]  # the env takes it and ends the episode


def test_stream_agent_watches_then_answers_from_keyframes_of_what_it_saw(double):
    env = EMEQAEnv("synthetic", mode="stream")
    agent = VLMAgent(double, watch_frames=9, num_keyframes=4)
    seen = []
    played = play_episode(
        env, agent, seed=0, on_step=lambda obs, info, action, done: seen.append(obs["frame"])
    )
    assert played.steps == 9 and played.terminated
    assert [a["kind"] for a in played.actions] == [CONTINUE] * 8 + [ANSWER]
    steps = agent.last_output["keyframe_steps"]
    assert steps == [0, 3, 5, 8]  # uniform keyframes of the 9 frames acted on
    request = double.requests[-1]
    np.testing.assert_array_equal(request.frames, np.stack([seen[i] for i in steps]))
    question = env.unwrapped._question
    assert played.info["answer"] == question.gt_answer  # the double's first reply is right
    assert played.info["reasoning_steps"] == [
        "I recall the rooms I walked through.",
        f"So the answer is {question.gt_answer}.",
    ]


def test_unparsable_reply_gives_an_empty_answer_and_a_logged_reason(double, caplog):
    memory, questions = make_synthetic_episode()
    broken = EQAInstance("q-broken", "Is anything broken here?", episode_id=questions[0].episode_id)
    env = EMEQAEnv([broken], mode="episodic", memories={broken.episode_id: memory})
    rm = EQARewardModel(double)
    wrapped = EQARMReward(env, rm, no_answer_reward=-1.0)
    with caplog.at_level(logging.WARNING, logger="habitat_eqarm.agents.vlm"):
        played = play_episode(wrapped, VLMAgent(double), seed=0)
    assert played.actions[-1] == {"kind": ANSWER, "answer": "", "reasoning": ""}
    assert "no <predicted_answer> block" in caplog.text
    assert played.reward == -1.0 and played.info["eqarm"]["status"] == "no_answer"


def two_turn_env(double, **kw):
    env = EMEQAEnv("synthetic", mode="episodic")
    return EQARMReward(env, EQARewardModel(double), seed=0, info_timings=False, two_turn=True, **kw)


def test_two_turn_wrong_first_answer_is_revised_after_the_critique(double):
    env = two_turn_env(double, improvement_weight=0.5, first_answer_weight=0.25)
    agent = VLMAgent(double)
    rewards, observations = [], []
    obs, info = env.reset(seed=0)
    agent.reset()
    double.generator_calls = 1  # the double's next first answer is the wrong one
    while True:
        action = agent.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert [o["turn"] for o in observations] == [1, 1]
    assert all(env.observation_space.contains(o) for o in observations)
    assert observations[0]["critique_score"] == 2.0 and "checked against" in obs["critique"]
    assert action["kind"] == REVISE and action["answer"] != WRONG
    details = info["eqarm"]
    # rewards are a few float64 operations on scores / 10: approx's default (1e-6 relative) is
    # far above their rounding (~1e-16) and far below the differences checked (>= 0.05)
    assert details["revised"] and details["first"]["score"] == 2 and details["score"] == 9
    assert details["first_reward"] == pytest.approx(0.2)
    assert details["improvement"] == pytest.approx(0.7)
    # the answer step pays 0.25 * R1, the last step R2 + 0.5 * (R2 - R1)
    assert rewards == pytest.approx([0.25 * 0.2, 0.9 + 0.5 * 0.7])
    assert agent.last_output["prompt_id"] == "eqarm-rev-v1"


@pytest.mark.parametrize(
    ("last_action", "expected_reward", "status"),
    [
        ({"kind": ANSWER, "answer": "", "reasoning": ""}, 0.9, "scored"),  # keep the answer
        ({"kind": REVISE, "answer": WRONG, "reasoning": "x"}, 0.2 - (0.9 - 0.2), "scored"),
        ({"kind": REVISE, "answer": " ", "reasoning": ""}, -0.5 - (0.9 + 0.5), "no_answer"),
    ],
)
def test_two_turn_keep_worse_revision_and_empty_revision(
    double, last_action, expected_reward, status
):
    env = two_turn_env(double, improvement_weight=1.0, no_answer_reward=-0.5)
    env.reset(seed=0)
    question = env.unwrapped._question
    _, reward, terminated, _, info = env.step(
        {"kind": ANSWER, "answer": question.gt_answer, "reasoning": "I saw it."}
    )
    assert not terminated and reward == 0.0 and info["eqarm"]["score"] == 9
    _, reward, terminated, _, info = env.step(last_action)
    assert terminated and reward == pytest.approx(expected_reward)
    assert info["eqarm"]["status"] == status
    assert info["eqarm"]["revised"] == (last_action["kind"] == REVISE)
    assert env.reset()[0]["turn"] == 0  # the next episode starts on the first turn


def test_check_env_on_the_two_turn_env(double):
    from gymnasium.utils.env_checker import check_env

    env = EQARMReward(
        EMEQAEnv("synthetic"), EQARewardModel(double), seed=0, info_timings=False, two_turn=True
    )
    check_env(env, skip_render_check=True)
    assert env.action_space["kind"].n == REVISE + 1


def test_two_turn_needs_dict_observations(double):
    import gymnasium as gym

    class Plain(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(ValueError, match="must be a Dict space to carry the critique"):
        EQARMReward(Plain(), EQARewardModel(double), two_turn=True)


def test_agent_through_eqarm_serve_and_the_openai_backend(eqarm_server, tmp_path, monkeypatch):
    """An OpenAI-compatible endpoint (our own server of the tiny model): the same agent code."""
    monkeypatch.setenv("EQARM_AGENT_KEY", eqarm_server.token)
    model = eqarm_server.get("models")["data"][0]["id"]
    options = {"base_url": eqarm_server.base_url, "api_key_env": "EQARM_AGENT_KEY"}
    env = EMEQAEnv("synthetic", mode="episodic", num_keyframes=2)
    before = eqarm_server.stats()["http"]["requests"].get("/v1/chat/completions", 0)
    with VLMAgent.from_pretrained(
        model,
        "openai",
        backend_kwargs={**options, "cache_dir": str(tmp_path / "cache")},
        num_keyframes=2,
        max_new_tokens=8,
        seed=0,
    ) as agent:
        played = play_episode(env, agent, seed=0)
    assert played.terminated and env.action_space.contains(played.actions[-1])
    assert agent.last_output["prompt_id"] == "eqarm-gen-v1"
    after = eqarm_server.stats()["http"]["requests"].get("/v1/chat/completions", 0)
    assert after == before + 1  # one generation, sent to the server
