import gymnasium as gym
import numpy as np
import pytest

import habitat_eqarm.envs  # noqa: F401 - registers the env
from habitat_eqarm.envs import ANSWER
from habitat_eqarm.envs.agents import ScriptedAgent
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.vector import EQARMVectorReward, unbatch_info
from habitat_eqarm.rewards.wrapper import EQARMReward

FAST = dict(k=2, max_new_tokens=4)


@pytest.fixture()
def counted_rm(tiny_model_path):
    """The real tiny model, with its score() calls counted (they still run)."""
    model = EQARewardModel.from_pretrained(str(tiny_model_path), batch_size=8)
    model.calls = []
    real = model.score

    def spy(instances, *args, **kwargs):
        model.calls.append(len(instances))
        return real(instances, *args, **kwargs)

    model.score = spy
    return model


def run_vector(env, steps=12, watch=4):
    agent = ScriptedAgent(watch_frames=watch)
    obs, info = env.reset(seed=0)
    finished = []
    for t in range(steps):
        obs, _rewards, _terminated, _truncated, info = env.step(
            agent.act_batch(obs, info, env.num_envs)
        )
        finished += [(t, i, d) for i, d in enumerate(unbatch_info(info)) if d is not None]
    return finished


def test_one_batched_call_for_all_envs_finishing_on_the_same_step(counted_rm):
    venv = gym.make_vec("habitat_eqarm/EMEQA-v0", num_envs=4, questions="synthetic")
    env = EQARMVectorReward(venv, counted_rm, seed=0, **FAST)
    finished = run_vector(env)
    assert counted_rm.calls == [4, 4]  # 2 rounds of 4 episodes: 2 calls, not 8
    assert env.calls == 2
    assert sorted({t for t, _, _ in finished}) == [3, 8]  # answer at step 4, reset, again
    assert all(d["k"] == 2 and "latency_s" in d for _, _, d in finished)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_per_env_wrappers_through_make_vec(tiny_model_path, mode):
    venv = gym.make_vec(
        "habitat_eqarm/EMEQA-v0",
        num_envs=4,
        vectorization_mode=mode,
        # async: Text observations need shared_memory=False; torch in sub-processes needs spawn
        vector_kwargs={"shared_memory": False, "context": "spawn"} if mode == "async" else {},
        wrappers=[lambda env: EQARMReward(env, str(tiny_model_path), seed=0, **FAST)],
        questions="synthetic",
    )
    finished = []
    agent = ScriptedAgent(watch_frames=3)
    obs, info = venv.reset(seed=0)
    for _ in range(4):
        obs, rewards, terminated, _, info = venv.step(agent.act_batch(obs, info, 4))
        if terminated.any():
            finished.append((rewards, unbatch_info(info)))
    ((rewards, details),) = finished
    assert len(details) == 4 and all(d["k"] == 2 for d in details)
    assert list(rewards) == [0.0 if d["score"] is None else d["score"] / 10 for d in details]
    # Text observations arrive intact from the sub-processes (stale with shared memory)
    from habitat_eqarm.data.synthetic import make_synthetic_episode

    asked = {q.question for q in make_synthetic_episode()[1]}
    assert all(q in asked for q in obs["question"])
    venv.close()


def test_background_scoring_delivers_rewards_later(counted_rm):
    venv = gym.make_vec("habitat_eqarm/EMEQA-v0", num_envs=2, questions="synthetic")
    env = EQARMVectorReward(venv, counted_rm, async_scoring=True, **FAST)
    finished = run_vector(env, steps=5, watch=2)
    _, owed = env.flush()
    delivered = [d for _, _, d in finished] + [d for d in owed if d]
    assert len(delivered) >= 2 and all(d["delayed_from_step"] >= 2 for d in delivered)
    assert counted_rm.calls and all(n == 2 for n in counted_rm.calls)
    env.close()


def test_same_step_autoreset(counted_rm):
    venv = gym.make_vec(
        "habitat_eqarm/EMEQA-v0",
        num_envs=3,
        questions="synthetic",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    env = EQARMVectorReward(venv, counted_rm, **FAST)
    finished = run_vector(env, steps=8, watch=3)
    assert counted_rm.calls == [3, 3] and len(finished) == 6
    assert all(len(env.states[i].recorder) >= 1 for i in range(3))


def test_vector_env_without_frames_is_refused(counted_rm):
    venv = gym.make_vec("CartPole-v1", num_envs=2)
    with pytest.raises(ValueError, match="cannot find frames"):
        EQARMVectorReward(venv, counted_rm)
    venv.close()


def test_episodic_vector_env_scores_each_keyframe_the_agent_saw_once(
    openeqa_dir, counted_rm, record_frames
):
    received = record_frames(counted_rm)
    venv = gym.make_vec(
        "habitat_eqarm/EMEQA-v0",
        num_envs=2,
        questions=str(openeqa_dir / "open-eqa-demo-data.json"),
        data_root=str(openeqa_dir),
        mode="episodic",
    )
    env = EQARMVectorReward(venv, counted_rm, seed=0, **FAST)
    obs, info = env.reset(seed=0)
    shown = obs["frames"].copy()
    _, _, terminated, _, info = env.step(ScriptedAgent().act_batch(obs, info, 2))
    assert terminated.all() and counted_rm.calls == [2]
    for i, frames in enumerate(received):
        np.testing.assert_array_equal(frames, shown[i])  # views 0..4 of sub-env i, each once
    assert all(d["keyframe_steps"] == [0, 1, 2, 3, 4] for d in unbatch_info(info))
    env.close()


def test_a_non_text_answer_is_a_type_error_naming_the_sub_env(counted_rm):
    venv = gym.make_vec("habitat_eqarm/EMEQA-v0", num_envs=2, questions="synthetic")
    env = EQARMVectorReward(venv, counted_rm, answer_source="action.text", **FAST)
    env.reset(seed=0)
    actions = {
        "kind": np.array([ANSWER, ANSWER]),
        "answer": ("", ""),
        "reasoning": ("", ""),
        "text": ("a cat", 7),
    }
    with pytest.raises(
        TypeError, match=r"sub-env 1, step 1: the answer at action\.text must be text, got int"
    ):
        env.step(actions)
    env.close()
