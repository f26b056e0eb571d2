"""HabitatEQAEnv: gymnasium's env checker with EQARMReward, recording, answers in info."""

from __future__ import annotations

import numpy as np
import pytest

SMALL = [
    "~habitat.task.measurements.eqarm_reward",  # EQARMReward scores instead
    "habitat.simulator.agents.main_agent.sim_sensors.rgb_sensor.width=64",
    "habitat.simulator.agents.main_agent.sim_sensors.rgb_sensor.height=36",
]


@pytest.fixture
def env(plugin, demo_overrides):
    from habitat_eqarm.envs.habitat_gym import HabitatEQAEnv

    env = HabitatEQAEnv(overrides=[*demo_overrides, *SMALL])
    yield env
    env.close()


@pytest.mark.slow
def test_check_env_with_eqarm_reward(env, tiny_model_path):
    from gymnasium.utils.env_checker import check_env

    from habitat_eqarm.rewards.wrapper import EQARMReward

    wrapped = EQARMReward(env, str(tiny_model_path), seed=0, max_new_tokens=8, info_timings=False)
    check_env(wrapped.unwrapped, skip_render_check=True)
    check_env(wrapped, skip_render_check=True)
    wrapped.reset(seed=1)
    *_, info = wrapped.step({"kind": 0, "answer": "", "reasoning": ""})
    _, reward, terminated, truncated, info = wrapped.step(
        {"kind": env.action_names.index("eqarm_answer"), "answer": "blue", "reasoning": "a\nb"}
    )
    assert terminated and not truncated and info["answer"] == "blue"
    assert info["reasoning_steps"] == ["a", "b"] and info["eqarm"]["keyframe_steps"] == [0, 1]
    assert reward == (info["eqarm"]["score"] or 0) / 10
    wrapped.close()


def test_seeded_episode_order_and_truncation(env):
    assert env.action_names == ["move_forward", "turn_left", "turn_right", "eqarm_answer"]
    order = [env.reset(seed=3)[1]["episode_id"]] + [env.reset()[1]["episode_id"] for _ in range(2)]
    assert sorted(order) == sorted(e.episode_id for e in env.habitat_env.episodes)
    assert env.reset(seed=3)[1]["episode_id"] == order[0]
    env.habitat_env._max_episode_steps = 2
    env.reset(seed=0)
    assert env.step({"kind": 0})[3] is False
    _, _, terminated, truncated, info = env.step({"kind": 1})
    assert truncated and not terminated and "answer" not in info
    with pytest.raises(ValueError, match=r"kind 9 not in 0\.\.3"):
        env.step({"kind": 9})


def test_episodes_are_recorded_in_openeqa_layout(plugin, demo_overrides, tmp_path):
    from habitat_eqarm.data.episode import EpisodeMemory
    from habitat_eqarm.envs.habitat_gym import HabitatEQAEnv

    env = HabitatEQAEnv(overrides=[*demo_overrides, *SMALL], record_dir=str(tmp_path))
    frames = [env.reset(seed=0, options={"episode_id": env.habitat_env.episodes[0].episode_id})[0]]
    frames += [env.step({"kind": 0})[0] for _ in range(3)]
    *_, info = env.step({"kind": 3, "answer": "x", "reasoning": ""})
    memory = EpisodeMemory.from_path(info["recorded_to"])
    assert len(memory) == 5 and not memory.has_depth
    np.testing.assert_array_equal(memory.frames([3])[0], frames[3]["rgb"])
    env.close()


def test_vlm_agent_plays_the_habitat_env_under_the_reward_wrapper(env, tiny_model_path):
    """The same policy API as EMEQAEnv's: navigation kinds until it has watched, then answer;
    in two-turn mode a scored answer is followed by the revision turn."""
    from habitat_eqarm.agents import VLMAgent
    from habitat_eqarm.envs.agents import play_episode
    from habitat_eqarm.rewards.wrapper import REVISE, EQARMReward

    answer_kind = env.action_names.index("eqarm_answer")
    wrapped = EQARMReward(env, str(tiny_model_path), seed=0, k=1, max_new_tokens=4, two_turn=True)
    agent = VLMAgent(
        str(tiny_model_path),
        backend_kwargs={"max_pixels": 20_000},
        watch_frames=3,
        continue_kind=env.action_names.index("turn_left"),
        answer_kind=answer_kind,
        max_new_tokens=8,
        seed=0,
    )
    played = play_episode(wrapped, agent, seed=0)
    kinds = [a["kind"] for a in played.actions]
    assert all(env.action_space.contains(a) for a in played.actions)
    assert kinds[:3] == [1, 1, answer_kind] and played.terminated
    assert played.info["answer"] == played.actions[2]["answer"]
    answered = played.actions[2]["answer"] != ""  # the tiny model may write no answer
    assert kinds[3:] == ([REVISE] if answered else [])
    assert played.info["eqarm"].get("revised", False) == answered
    agent.close()
    wrapped.close()


def test_rollouts_of_the_habitat_env_carry_the_dataset_answers(env, tmp_path):
    from habitat_eqarm.agents.rollouts import RolloutsConfig, run_rollouts
    from habitat_eqarm.data.episode import EpisodeMemory
    from habitat_eqarm.data.schema import read_jsonl
    from habitat_eqarm.envs.agents import ScriptedAgent

    answer_kind = env.action_names.index("eqarm_answer")
    agent = ScriptedAgent(lambda qid, q: "blue", answer_kind=answer_kind)
    cfg = RolloutsConfig(out=str(tmp_path / "r.jsonl"), episodes=2)
    assert run_rollouts(cfg, policy=agent, env=env).done_now == 2
    answers = {e.question_id: e.answer for e in env.habitat_env.episodes}
    for inst in read_jsonl(tmp_path / "r.jsonl"):
        qid = inst.meta["rollout"]["env_question_id"]
        assert inst.gt_answer == answers[qid] and inst.question_id == f"{qid}#0"
        assert inst.predicted_answer == "blue" and inst.keyframe_indices == [0]
        assert len(EpisodeMemory.from_path(inst.episode_path)) == 1  # the reset's frame
