import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import habitat_eqarm.envs  # noqa: F401 - registers the env
from habitat_eqarm.envs import CONTINUE, EMEQAEnv
from habitat_eqarm.envs.agents import ScriptedAgent
from habitat_eqarm.rewards.episode_scoring import RewardShaping
from habitat_eqarm.rewards.model import EQARewardModel
from habitat_eqarm.rewards.wrapper import EQARMReward

WAIT = {"kind": CONTINUE, "answer": "", "reasoning": ""}
FAST = dict(k=2, max_new_tokens=6)


@pytest.fixture(scope="module")
def tiny_rm(tiny_model_path):
    return EQARewardModel.from_pretrained(str(tiny_model_path))


def play(env, agent, seed=None, options=None):
    obs, info = env.reset(seed=seed, options=options)
    while True:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        if terminated or truncated:
            return reward, info


def test_check_env_on_the_wrapped_env(tiny_rm):
    env = EQARMReward(
        EMEQAEnv("synthetic", mode="episodic"), tiny_rm, seed=0, info_timings=False, **FAST
    )
    check_env(env, skip_render_check=True)


def test_real_demo_episode_scored_end_to_end(openeqa_dir, tiny_model_path):
    env = gym.make(
        "habitat_eqarm/EMEQA-v0",
        questions=str(openeqa_dir / "open-eqa-demo-data.json"),
        data_root=str(openeqa_dir),
    )
    wrapped = EQARMReward(env, str(tiny_model_path), seed=3, num_keyframes=5, **FAST)
    reward, info = play(
        wrapped, ScriptedAgent(lambda qid, q: "Eight chairs", watch_frames=40), seed=0
    )
    details = info["eqarm"]
    assert details["status"] in ("scored", "no_valid_sample")
    assert details["k"] == 2 and len(details["scores"]) == 2 and len(details["critiques"]) == 2
    assert details["n_valid"] == sum(s is not None for s in details["scores"])
    assert reward == (0.0 if details["score"] is None else details["score"] / 10)
    # frames recorded: the reset's and those of the 39 "continue" steps (not the answer's) = 40
    assert details["keyframe_steps"] == [0, 10, 20, 29, 39]
    assert details["latency_s"] > 0 and details["prompt_id"] == "eqarm-rm-v1"
    assert details["question_id"] == info["question_id"]
    assert len(wrapped.recorder) == 40
    wrapped.close()
    assert wrapped.handle._model is None  # created from a path, so closed with the wrapper


def test_same_seed_same_reward_and_critiques(tiny_rm):
    def run():
        env = EQARMReward(EMEQAEnv("synthetic"), tiny_rm, seed=0, temperature=1.0, **FAST)
        return play(env, ScriptedAgent(watch_frames=3), seed=5)[1]["eqarm"]["critiques"]

    assert run() == run()


def test_episode_without_answer_gets_the_documented_reward(tiny_rm):
    env = EQARMReward(EMEQAEnv("synthetic"), tiny_rm, no_answer_reward=-0.5, **FAST)
    env.reset(seed=0)
    truncated = False
    while not truncated:
        _, reward, _, truncated, info = env.step(WAIT)
    assert reward == -0.5
    assert info["eqarm"]["status"] == "no_answer" and "without an answer" in info["eqarm"]["reason"]


def test_feedback_reaches_the_next_reset(tiny_rm):
    env = EQARMReward(EMEQAEnv("synthetic", mode="episodic"), tiny_rm, feedback=True, **FAST)
    play(env, ScriptedAgent(lambda qid, q: "blue"), seed=0)
    _, info = env.reset()
    assert info["eqarm_feedback"]["answer"] == "blue"
    assert set(info["eqarm_feedback"]) == {"question", "answer", "score", "critique"}
    assert "eqarm_feedback" not in env.reset()[1]  # delivered once


def test_answer_and_question_from_the_action_and_info(tiny_rm):
    """A user's env that puts everything in the action: configured, no glue code."""

    class Plain(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (24, 32, 3), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {"q": "What is here?"}

        def step(self, action):
            return self.observation_space.sample(), 1.0, action["done"], False, {}

    env = EQARMReward(
        Plain(),
        tiny_rm,
        question_source="info.q",
        answer_source="action.text",
        reasoning_source="action.why",
        reward_mode="raw",
        add_env_reward=True,
        **FAST,
    )
    env.reset(seed=0)
    env.step({"done": False})
    _, reward, _, _, info = env.step({"done": True, "text": "a cat", "why": ["I see fur."]})
    assert info["eqarm"]["keyframe_steps"] == [0, 1]  # not the observation after the answer
    assert reward == (info["eqarm"]["score"] or 0.0) + 1.0
    with pytest.raises(TypeError, match=r"the answer at action\.text must be text, got int"):
        env.reset()
        env.step({"done": True, "text": 7})


def test_env_without_frames_is_refused_at_construction(tiny_rm):
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="cannot find frames in the observations"):
        EQARMReward(env, tiny_rm)
    with pytest.raises(
        ValueError, match=r"no frame key 'rgb'; observation keys: \['frame', 'question'\]"
    ):
        EQARMReward(EMEQAEnv("synthetic"), tiny_rm, frame_key="rgb")
    with pytest.raises(ValueError, match="a source must look like"):
        EQARMReward(EMEQAEnv("synthetic"), tiny_rm, answer_source="answer")
    with pytest.raises(TypeError, match="reward_model must be"):
        EQARMReward(EMEQAEnv("synthetic"), 42)


def test_a_failing_reward_model_is_reraised_with_context_and_the_env_recovers(tiny_rm):
    env = EQARMReward(EMEQAEnv("synthetic", mode="episodic"), tiny_rm, k=1, max_new_tokens=0)
    agent = ScriptedAgent(lambda qid, q: "red")
    with pytest.raises(
        RuntimeError, match=r"scoring episode 0 \(question 'synthetic/seed0-q\d+'\) failed"
    ):
        play(env, agent, seed=0)
    env.params.max_new_tokens = 4
    reward, info = play(env, agent)
    assert info["eqarm"]["k"] == 1 and reward >= 0.0
    env.close()
    assert tiny_rm.backend.model is not None  # a model the wrapper was given is never closed


@pytest.mark.parametrize(
    ("shaping", "score", "env_reward", "expected"),
    [
        (RewardShaping(), 7.0, 1.0, 0.7),
        (RewardShaping(mode="raw"), 7.0, 1.0, 7.0),
        (RewardShaping(scale=2.0, add_env_reward=True), 5.0, 1.0, 2.0),
        (RewardShaping(no_valid_reward=-1.0), None, 0.0, -1.0),
    ],
)
def test_reward_shaping(shaping, score, env_reward, expected):
    assert shaping.reward(score, env_reward) == pytest.approx(expected)


def test_spec_stays_serialisable(tiny_model_path):
    env = gym.make("habitat_eqarm/EMEQA-v0", questions="synthetic")
    wrapped = EQARMReward(env, str(tiny_model_path), k=2)
    assert (
        "EQARMReward" in wrapped.spec.to_json() and str(tiny_model_path) in wrapped.spec.to_json()
    )


@pytest.fixture()
def frames_received(tiny_rm, record_frames):
    """The frames each request to the reward model's backend carried (the calls still run)."""
    yield record_frames(tiny_rm)
    del tiny_rm.backend.generate


def demo_env(openeqa_dir, mode):
    questions = str(openeqa_dir / "open-eqa-demo-data.json")
    return EMEQAEnv(questions, data_root=str(openeqa_dir), mode=mode)


def test_episodic_mode_scores_each_keyframe_the_agent_saw_once(
    openeqa_dir, tiny_rm, frames_received
):
    env = EQARMReward(demo_env(openeqa_dir, "episodic"), tiny_rm, seed=0, **FAST)
    obs, info = env.reset(seed=0)
    shown = obs["frames"]  # the 5 keyframes the agent answers from
    action = ScriptedAgent(lambda qid, q: "a sofa").act(obs, info)
    *_, terminated, _, info = env.step(action)
    assert terminated and len(frames_received) == 1
    np.testing.assert_array_equal(frames_received[0], shown)  # views 0..4, each once, in order
    assert info["eqarm"]["keyframe_steps"] == [0, 1, 2, 3, 4]
    assert len(env.recorder) == 5


def test_stream_mode_scores_the_frames_seen_not_the_answer_step_again(
    openeqa_dir, tiny_rm, frames_received
):
    env = EQARMReward(demo_env(openeqa_dir, "stream"), tiny_rm, seed=0, **FAST)
    obs, info = env.reset(seed=0)
    agent, seen = ScriptedAgent(watch_frames=5), []
    while True:
        seen.append(obs["frame"])
        obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
        if terminated or truncated:
            break
    assert terminated and len(seen) == 5
    (received,) = frames_received
    np.testing.assert_array_equal(received, np.stack(seen))  # frames 0..4, none twice
    assert info["eqarm"]["keyframe_steps"] == [0, 1, 2, 3, 4]
