import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import habitat_eqarm.envs  # noqa: F401 - registers the env
from habitat_eqarm.envs import ANSWER, CONTINUE, EMEQAEnv

WAIT = {"kind": CONTINUE, "answer": "", "reasoning": ""}


def answer(text="A red sofa", reasoning="I saw a sofa.\nIt was red."):
    return {"kind": ANSWER, "answer": text, "reasoning": reasoning}


@pytest.mark.parametrize("mode", ["stream", "episodic"])
def test_check_env_passes(mode):
    env = EMEQAEnv("synthetic", mode=mode)
    check_env(env)


def test_registered_and_made_with_gym_make():
    env = gym.make("habitat_eqarm/EMEQA-v0", questions="synthetic", mode="episodic")
    obs, _ = env.reset(seed=1)
    assert obs["frames"].shape == (5, 240, 320, 3)
    assert env.spec.to_json()  # the spec stays serialisable


def test_real_demo_episode_streamed_to_the_end_then_answered(openeqa_dir):
    env = EMEQAEnv(str(openeqa_dir / "open-eqa-demo-data.json"), data_root=str(openeqa_dir))
    obs, info = env.reset(seed=0, options={"question_id": "f15fbfbb-eb0f-41e7-9d33-bc75e48e62d1"})
    assert obs["frame"].shape == (720, 1280, 3)
    assert obs["question"] == "How many chairs are around the dining table?"
    assert (info["num_frames"], info["source"]) == (168, "hm3d")
    first = obs["frame"]
    for t in range(1, 168):
        obs, reward, terminated, truncated, info = env.step(WAIT)
        assert info["frame_index"] == t and reward == 0.0
        assert not (terminated or truncated)  # the last frame can still be answered
    last = obs["frame"]
    obs, _, terminated, truncated, info = env.step(WAIT)  # continuing past it ends the episode
    assert truncated and not terminated and info["frame_index"] == 167
    assert not np.array_equal(first, last)
    env.reset(options={"question_id": "f15fbfbb-eb0f-41e7-9d33-bc75e48e62d1"})
    for _ in range(10):
        env.step(WAIT)
    _, _, terminated, truncated, info = env.step(
        answer("Eight chairs", "I saw the table.\nI counted.")
    )
    assert terminated and not truncated
    assert info["answer"] == "Eight chairs"
    assert info["reasoning_steps"] == ["I saw the table.", "I counted."]
    assert info["frame_index"] == 10


def test_seeded_episode_order_covers_every_question():
    env = EMEQAEnv("synthetic", mode="episodic")
    order = [env.reset(seed=7)[1]["question_id"]] + [
        env.reset()[1]["question_id"] for _ in range(8)
    ]
    again = [env.reset(seed=7)[1]["question_id"]] + [
        env.reset()[1]["question_id"] for _ in range(8)
    ]
    assert order == again and len(set(order)) == 9


def test_frames_are_resized_to_frame_size():
    env = EMEQAEnv("synthetic", frame_size=(60, 80))
    obs, _ = env.reset(seed=0)
    assert obs["frame"].shape == (60, 80, 3) and env.observation_space.contains(obs)


def test_bad_actions_and_setup():
    env = EMEQAEnv("synthetic")
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(WAIT)
    env.reset(seed=0)
    with pytest.raises(TypeError, match="the answer must be text, got int"):
        env.step({"kind": ANSWER, "answer": 42, "reasoning": ""})
    with pytest.raises(ValueError, match="unknown question_id 'nope'"):
        env.reset(options={"question_id": "nope"})
    with pytest.raises(ValueError, match="mode must be one of"):
        EMEQAEnv("synthetic", mode="online")
