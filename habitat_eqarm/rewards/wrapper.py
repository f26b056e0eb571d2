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

Two-turn mode (``two_turn=True``, critique-guided answering): the step that scores the first
answer does not end the episode. Its observation is the env's, plus ``turn`` (1),
``critique`` (EQA-RM's first non-empty critique, "" if none) and ``critique_score`` (the
aggregated score, -1 if no sample was valid); on every other step ``turn`` is 0, the critique
"" and the score -1. The agent then acts once more, on the wrapper alone (the env's episode is
over): ``{"kind": REVISE, "answer": ..., "reasoning": ...}`` revises, and the revision is scored
on the same recorded frames; any other action keeps the first answer. That step ends the
episode (terminated). Rewards, with R1 and R2 the shaped rewards of the first and final answer:
the answer step returns ``first_answer_weight * R1`` and the last step
``R2 + improvement_weight * (R2 - R1)``; the defaults (0, 0) make the return the final answer's
reward alone. docs/method.md says why these shapes and what the weights do. A revision with no
answer gets ``no_answer_reward``. ``info["eqarm"]`` of the last step holds the final scoring
plus ``revised``, ``first`` (the first turn's ``info["eqarm"]``), ``first_reward``,
``final_reward`` and ``improvement`` (R2 - R1). An episode that ends without a first answer
ends as in one-turn mode.

Where things come from is configurable with ``"obs.KEY"``, ``"info.KEY"`` or ``"action.KEY"``:
by default the question is ``obs.question``, the answer ``info.answer`` and the reasoning
``info.reasoning_steps`` (a list, or text with one step per line), which is what ``EMEQAEnv``
reports. ``RewardWrapper`` cannot be used: its ``reward()`` sees only the scalar reward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.data.schema import TEXT_CHARSET
from habitat_eqarm.rewards.config import ScoringConfig
from habitat_eqarm.rewards.episode_scoring import (
    EpisodeState,
    RewardSetup,
    answer_text,
    find_frame_key,
    frames_in,
    lookup,
    no_answer_info,
    score_answered_episode,
    unanswered,
)
from habitat_eqarm.rewards.model import EQARewardModel, Judgement

#: The action kind that revises the first answer in two-turn mode (any other kind keeps it).
REVISE = 2
#: Longest critique an observation carries (characters; longer ones are cut).
MAX_CRITIQUE = 4096
#: ``critique_score`` of an observation that has no score (before the answer, or none valid).
NO_SCORE = -1.0


def critique_text(text: str | None) -> str:
    """A critique as the observation space allows: cut to ``MAX_CRITIQUE``, characters outside
    :data:`TEXT_CHARSET` replaced by "?" (``info["eqarm"]`` keeps the critique as written)."""
    return "".join(c if c in TEXT_CHARSET else "?" for c in (text or "")[:MAX_CRITIQUE])


@dataclass
class FirstTurn:
    """A two-turn episode between its first answer and the agent's last action."""

    obs: Any
    info: dict[str, Any]
    reward: float
    details: dict[str, Any]
    env_reward: float
    seed: int | None
    critique: str
    score: float


class EQARMReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Reward an env's episodes with EQA-RM (see module doc).

    ``config``: the :class:`~habitat_eqarm.rewards.config.ScoringConfig` (sampling, keyframes,
    reward shaping, sources); its fields may also be given as keyword arguments (``k=4``,
    ``seed=0``, ``answer_source="action.answer"``), which replace the config's.
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
        config: ScoringConfig | None = None,
        frame_key: str | None = None,
        max_frames: int = 256,
        record_dir: str | None = None,
        record_format: str = "folder",
        feedback: bool = False,
        info_timings: bool = True,
        two_turn: bool = False,
        first_answer_weight: float = 0.0,
        improvement_weight: float = 0.0,
        model_kwargs: dict[str, Any] | None = None,
        **scoring: Any,
    ) -> None:
        setup = self._setup = RewardSetup.build(
            reward_model, ScoringConfig.from_options(config, **scoring), model_kwargs
        )
        gym.utils.RecordConstructorArgs.__init__(
            self,
            reward_model=reward_model,
            **asdict(setup.config),
            frame_key=frame_key,
            max_frames=max_frames,
            record_dir=record_dir,
            record_format=record_format,
            feedback=feedback,
            info_timings=info_timings,
            two_turn=two_turn,
            first_answer_weight=first_answer_weight,
            improvement_weight=improvement_weight,
            model_kwargs=model_kwargs,
        )
        gym.Wrapper.__init__(self, env)
        self.frame_key = find_frame_key(env.observation_space, frame_key, str(env))
        self.sources, self.params, self.shaping, self.handle = (
            setup.sources,
            setup.config,
            setup.shaping,
            setup.handle,
        )
        seed = self.base_seed = setup.config.seed
        self.feedback = feedback
        self.info_timings = info_timings
        recorder = EpisodeMemoryRecorder(max_frames, out_dir=record_dir, write_format=record_format)
        self.state = EpisodeState(recorder)
        self._pending_feedback: dict[str, Any] | None = None
        self._run_seed: int | None = seed
        self.two_turn = two_turn
        self.first_answer_weight, self.improvement_weight = first_answer_weight, improvement_weight
        self._first: FirstTurn | None = None
        self._judgement: Judgement | None = None
        if two_turn:
            self._two_turn_spaces(env)

    def _two_turn_spaces(self, env: gym.Env) -> None:
        if not isinstance(env.observation_space, spaces.Dict):
            raise ValueError(
                f"EQARMReward(two_turn=True): the observations of {env} must be a Dict space "
                f"to carry the critique, got {env.observation_space}"
            )
        self.observation_space = spaces.Dict(
            {
                **env.observation_space.spaces,
                "turn": spaces.Discrete(2),
                "critique": spaces.Text(MAX_CRITIQUE, min_length=0, charset=TEXT_CHARSET),
                "critique_score": spaces.Box(NO_SCORE, 10.0, (), np.float32),
            }
        )
        action_space = env.action_space
        kind = action_space.spaces.get("kind") if isinstance(action_space, spaces.Dict) else None
        if isinstance(kind, spaces.Discrete) and kind.n <= REVISE:
            self.action_space = spaces.Dict(
                {**action_space.spaces, "kind": spaces.Discrete(REVISE + 1)}
            )

    def _turn_obs(self, obs: Any, turn: int = 0, critique: str = "", score: float = NO_SCORE):
        if not self.two_turn:
            return obs
        extra = {"turn": turn, "critique": critique, "critique_score": np.array(score, np.float32)}
        return {**obs, **extra}

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
        self._first = None
        return self._turn_obs(obs), info

    def step(self, action: Any):
        """Step the env; at the end of an answered episode, score it (two-turn: see module doc)."""
        if self._first is not None:
            return self._last_turn(action)
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        self._observe(obs, info, action, final=terminated or truncated)
        if not (terminated or truncated):
            return self._turn_obs(obs), env_reward, terminated, truncated, info
        self._judgement = None
        reward, details = self._finish(obs, info, action, float(env_reward))
        if not self.two_turn or self._judgement is None:
            return self._turn_obs(obs), reward, terminated, truncated, {**info, "eqarm": details}
        judgement = self._judgement
        score = NO_SCORE if judgement.score is None else float(judgement.score)
        critique = critique_text(next((c for c in judgement.critiques if c), None))
        seed = None if self._run_seed is None else self._run_seed + self.state.episode
        self._first = FirstTurn(
            obs, info, reward, details, float(env_reward), seed, critique, score
        )
        info = {**info, "eqarm": details}
        return (
            self._turn_obs(obs, 1, critique, score),
            self.first_answer_weight * reward,
            False,
            False,
            info,
        )

    def _last_turn(self, action: Any):
        """Two-turn mode: the revision (or not) after the critique; ends the episode."""
        first, self._first = self._first, None
        revised = isinstance(action, dict) and action.get("kind") == REVISE
        if not revised:
            final, details = first.reward, dict(first.details)
        else:
            where = (
                f"EQARMReward: episode {self.state.episode}: the revised answer at action.answer"
            )
            answer = answer_text(action.get("answer"), where)
            if answer is None:
                final = self.shaping.no_answer_reward
                details = no_answer_info("the revision has no answer (action.answer)", final)
            else:
                final, details, _, _ = score_answered_episode(
                    self._setup,
                    self.state,
                    self._name(),
                    answer,
                    action.get("reasoning", ""),
                    first.seed,
                    first.env_reward,
                    self.info_timings,
                )
        improvement = final - first.reward
        reward = final + self.improvement_weight * improvement
        details.update(
            reward=reward,
            revised=revised,
            first=first.details,
            first_reward=first.reward,
            final_reward=final,
            improvement=improvement,
        )
        obs = self._turn_obs(first.obs, 1, first.critique, first.score)
        return obs, reward, True, False, {**first.info, "eqarm": details}

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
        self._judgement = judgement
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
