"""`EQARMReward`: a Gymnasium wrapper that scores an agent's answer with EQA-RM.

The wrapper records the frame(s) of every observation the agent acts on: the reset's and
those of every step but the last (the observation returned with the answer comes after it,
so it is not recorded and no frame is judged twice). When an episode ends
(terminated or truncated) with an answer, it builds an :class:`EQAInstance` from the question,
the answer and the reasoning steps, picks keyframes of the recorded memory, scores it with the
reward model and returns the reward (default score / 10, in [0, 1]; see
:class:`RewardShaping`). ``info["eqarm"]`` then holds the score, critiques, per-sample scores,
valid count, keyframe indices and latency. Every other step returns the env's own reward
untouched (0 for :class:`~habitat_eqarm.envs.emeqa.EMEQAEnv`). An episode that ends without an
answer gets ``no_answer_reward`` (0) and ``info["eqarm"]["reason"]`` says why.

Where things come from is configurable with ``"obs.KEY"``, ``"info.KEY"`` or ``"action.KEY"``:
by default the question is ``obs.question``, the answer ``info.answer`` and the reasoning
``info.reasoning_steps`` (a list, or text with one step per line), which is what ``EMEQAEnv``
reports. ``RewardWrapper`` cannot be used: its ``reward()`` sees only the scalar reward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.rewards.episode_scoring import (
    EpisodeState,
    RewardSetup,
    answer_text,
    find_frame_key,
    frames_in,
    lookup,
    score_answered_episode,
    unanswered,
)
from habitat_eqarm.rewards.model import EQARewardModel


class EQARMReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Reward an env's episodes with EQA-RM (see module doc).

    ``reward_model``: an :class:`EQARewardModel` (never closed by the wrapper), or a path / hub
    id or a zero-argument factory, created on first use and closed with the wrapper, so the
    env spec stays serialisable. ``seed``: base seed of the reward model's sampling; episode n
    of a run reset with seed s samples with seed ``s + n`` (or ``seed + n``), so the same seeds
    give the same rewards. ``feedback=True`` puts the last critique and score into the next
    ``reset``'s info as ``info["eqarm_feedback"]``. ``info_timings=False`` leaves wall-clock
    latency out of ``info`` (Gymnasium's ``check_env`` requires identical infos for identical
    seeds). ``record_dir`` writes each episode to disk (see :class:`EpisodeMemoryRecorder`).
    """

    def __init__(
        self,
        env: gym.Env,
        reward_model: EQARewardModel | str | Callable[[], EQARewardModel],
        *,
        k: int = 1,
        aggregate: str = "mean",
        temperature: float = 0.8,
        top_p: float = 0.9,
        max_new_tokens: int = 512,
        num_keyframes: int = 5,
        keyframe_method: str = "uniform",
        seed: int | None = None,
        reward_mode: str = "normalized",
        reward_scale: float = 1.0,
        add_env_reward: bool = False,
        no_answer_reward: float = 0.0,
        no_valid_reward: float = 0.0,
        frame_key: str | None = None,
        question_source: str = "obs.question",
        answer_source: str = "info.answer",
        reasoning_source: str = "info.reasoning_steps",
        question_id_source: str = "info.question_id",
        max_frames: int = 256,
        record_dir: str | None = None,
        record_format: str = "folder",
        feedback: bool = False,
        info_timings: bool = True,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        options = {k_: v for k_, v in locals().items() if k_ not in ("self", "env", "__class__")}
        gym.utils.RecordConstructorArgs.__init__(self, **options)
        gym.Wrapper.__init__(self, env)
        self.frame_key = find_frame_key(env.observation_space, frame_key, str(env))
        setup = self._setup = RewardSetup.build(reward_model, options)
        self.sources, self.params, self.shaping, self.handle = (
            setup.sources,
            setup.params,
            setup.shaping,
            setup.handle,
        )
        self.base_seed = seed
        self.feedback = feedback
        self.info_timings = info_timings
        recorder = EpisodeMemoryRecorder(max_frames, out_dir=record_dir, write_format=record_format)
        self.state = EpisodeState(recorder)
        self._pending_feedback: dict[str, Any] | None = None
        self._run_seed: int | None = seed

    @property
    def recorder(self) -> EpisodeMemoryRecorder:
        """The episode-memory recorder of the current episode."""
        return self.state.recorder

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and clear the recorded memory."""
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._run_seed = seed if self.base_seed is None else self.base_seed + seed
            self.state.episode = -1
        self.state.begin(self._name())
        self._observe(obs, info, None)
        if self.feedback and self._pending_feedback is not None:
            info = {**info, "eqarm_feedback": self._pending_feedback}
        self._pending_feedback = None
        return obs, info

    def step(self, action: Any):
        """Step the env; at the end of an answered episode, score it."""
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        self._observe(obs, info, action, final=terminated or truncated)
        if not (terminated or truncated):
            return obs, env_reward, terminated, truncated, info
        reward, details = self._finish(obs, info, action, float(env_reward))
        return obs, reward, terminated, truncated, {**info, "eqarm": details}

    def _name(self) -> str:
        spec = getattr(self.env, "spec", None)
        return (spec.id.replace("/", "-") if spec else type(self.env.unwrapped).__name__).lower()

    def _observe(self, obs: Any, info: dict, action: Any, final: bool = False) -> None:
        self.state.observe(
            frames_in(obs, self.frame_key),
            lookup(self.sources["question"], obs, info, action),
            lookup(self.sources["question_id"], obs, info, action),
            final=final,
        )

    def _finish(self, obs: Any, info: dict, action: Any, env_reward: float):
        where = f"EQARMReward: episode {self.state.episode}: the answer at {self.sources['answer']}"
        raw_answer = lookup(self.sources["answer"], obs, info, action)
        self.recorder.finish()
        answer = answer_text(raw_answer, where)
        if answer is None:
            return unanswered(self.shaping, self.sources["answer"])
        reasoning = lookup(self.sources["reasoning"], obs, info, action)
        seed = None if self._run_seed is None else self._run_seed + self.state.episode
        reward, details, instance, judgement = score_answered_episode(
            self._setup,
            self.state,
            self._name(),
            answer,
            reasoning,
            seed,
            env_reward,
            self.info_timings,
        )
        if self.feedback:
            self._pending_feedback = {
                "question": instance.question,
                "answer": answer,
                "score": judgement.score,
                "critique": next((c for c in judgement.critiques if c), None),
            }
        return reward, details

    def close(self) -> None:
        """Close the env, the recorder, and the reward model if the wrapper created it."""
        self.recorder.close()
        self.handle.close()
        super().close()
