"""A whole habitat.Env episode on EQARMReplaySim-v0 over OpenEQA's real demo video, answered
and scored by the tiny reward model through the eqarm_reward measure."""

from __future__ import annotations

import numpy as np
import pytest
import standins

QUESTION = "f15fbfbb-eb0f-41e7-9d33-bc75e48e62d1"  # "How many chairs are around the dining table?"
ANSWER, REASONING = "Eight chairs", "I walked past the dining table.\nI counted the chairs."


def _episode(env, episode_id: str):
    env.current_episode = next(e for e in env.episodes if e.episode_id == episode_id)
    return env.reset()


@pytest.mark.slow
def test_answered_episode_is_scored_like_eqarm_reward(plugin, demo_overrides, tiny_model_path):
    import habitat

    env = habitat.Env(plugin.get_config(overrides=demo_overrides))
    calls_before = len(standins.CALLS)
    obs = _episode(env, QUESTION)
    assert obs["rgb"].shape == (180, 320, 3) and obs["question"].startswith("How many chairs")
    frames = [obs["rgb"]]
    for _ in range(5):
        frames.append(env.step("move_forward")["rgb"])
        assert not env.episode_over
    assert env.sim.frame_index == 5 and not np.array_equal(frames[0], frames[5])
    args = {"answer": ANSWER, "reasoning": REASONING}
    env.step({"action": "eqarm_answer", "action_args": args})
    assert env.episode_over and env.task.answer == ANSWER
    details = env.task.measurements.measures["eqarm_reward"].details
    assert env.get_metrics()["eqarm_reward"] == details["reward"]
    assert details["status"] in ("scored", "no_valid_sample") and details["k"] == 2
    assert details["question_id"] == QUESTION and details["keyframe_steps"] == [0, 1, 2, 4, 5]
    assert standins.CALLS[calls_before:] == []  # nothing of habitat-sim was used
    env.close()

    # The same episode through EMEQAEnv + EQARMReward gives the same judgement: one scoring path.
    from habitat_eqarm.envs.emeqa import ANSWER as KIND_ANSWER
    from habitat_eqarm.envs.emeqa import EMEQAEnv
    from habitat_eqarm.rewards.wrapper import EQARMReward

    data = demo_overrides[0].split("=", 1)[1]
    gym_env = EMEQAEnv(data, demo_overrides[1].split("=", 1)[1], frame_size=(180, 320))
    wrapped = EQARMReward(gym_env, str(tiny_model_path), k=2, max_new_tokens=24, seed=0)
    wrapped.reset(seed=0, options={"question_id": QUESTION})
    for _ in range(5):
        wrapped.step({"kind": 0, "answer": "", "reasoning": ""})
    *_, info = wrapped.step({"kind": KIND_ANSWER, "answer": ANSWER, "reasoning": REASONING})
    theirs = info["eqarm"]
    for key in ("reward", "score", "scores", "critiques", "n_valid", "keyframe_indices"):
        assert details[key] == theirs[key], key
    wrapped.close()


def test_replay_ends_with_the_memory_and_unanswered_gets_no_answer_reward(plugin, demo_overrides):
    import habitat

    overrides = [*demo_overrides, "habitat.simulator.frames_per_step=60"]
    env = habitat.Env(plugin.get_config(overrides=overrides))
    _episode(env, QUESTION)
    seen = []
    while not env.episode_over:
        env.step("turn_left")
        seen.append(env.sim.frame_index)
    assert seen == [60, 120, 167] and env.sim.memory_exhausted
    assert env.get_metrics()["eqarm_reward"] == 0.0
    assert env.task.measurements.measures["eqarm_reward"].details["status"] == "no_answer"
    env.close()


def test_depth_is_replayed_in_metres_from_openeqa_hm3d_units(plugin, depth_questions):
    import habitat

    from habitat_eqarm.data.episode import EpisodeMemory

    questions, root = depth_questions
    overrides = [
        f"habitat.dataset.data_path={questions}",
        f"habitat.dataset.episodes_root={root}",
        "habitat.simulator.agents.main_agent.sim_sensors.depth_sensor.normalize_depth=False",
    ]
    cfg = plugin.get_config("benchmark/eqarm/openeqa_replay_rgbd.yaml", overrides)
    env = habitat.Env(cfg)
    obs = env.reset()
    memory = EpisodeMemory.from_path(env.current_episode.episode_path)
    raw = memory.depth([0])[0].astype(np.float32)
    assert obs["depth"].shape == (180, 320, 1) and obs["depth"].dtype == np.float32
    expected = np.clip(raw.mean() / (65535 / 10), 0, 10)
    assert obs["depth"].mean() == pytest.approx(expected, rel=1e-3)
    np.testing.assert_allclose(env.sim.camera_pose(), memory.poses([0])[0])
    env.close()


def test_a_sensor_a_recording_cannot_replay_is_refused(plugin, demo_overrides):
    import habitat

    sensor = "habitat.simulator.agents.main_agent.sim_sensors.semantic_sensor"
    overrides = [*demo_overrides, f"+{sensor}.type=HabitatSimSemanticSensor"]
    with pytest.raises(ValueError, match="can only replay"):
        habitat.Env(plugin.get_config(overrides=overrides))
