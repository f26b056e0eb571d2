"""What the single-env and vector reward wrappers share: where an episode's question, answer
and reasoning come from, how a finished episode becomes an :class:`EQAInstance`, how a
:class:`Judgement` becomes a reward, and the reward model they may or may not own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.data.schema import EQAInstance, split_reasoning
from habitat_eqarm.rewards.config import REWARD_MODES, ScoringConfig, parse_source
from habitat_eqarm.rewards.model import EQARewardModel, Judgement

FRAME_KEYS = ("frame", "frames", "rgb")


def lookup(spec: str, obs: Any, info: dict, action: Any) -> Any:
    """The value a source points at, or None where it is absent."""
    place, key = parse_source(spec)
    container = {"obs": obs, "info": info, "action": action}[place]
    if isinstance(container, dict):
        return container.get(key)
    return None


def frames_in(obs: Any, frame_key: str | None) -> np.ndarray:
    """The frame(s) an observation carries, as ``(k, H, W, 3)``."""
    value = obs if frame_key is None else (obs.get(frame_key) if isinstance(obs, dict) else None)
    if value is None:
        raise ValueError(f"the observation has no frame under key {frame_key!r}")
    arr = np.asarray(value)
    return arr[None] if arr.ndim == 3 else arr


def find_frame_key(observation_space: Any, frame_key: str | None, env_name: str) -> str | None:
    """Check (or pick) the observation key holding frames; a clear error when there is none."""
    from gymnasium import spaces

    if isinstance(observation_space, spaces.Dict):
        keys = list(observation_space.spaces)
        key = frame_key or next((k for k in FRAME_KEYS if k in keys), None)
        if key is None or key not in keys:
            raise ValueError(
                f"EQARMReward: the observations of {env_name} have no frame key "
                f"{frame_key or FRAME_KEYS!r}; observation keys: {keys}. Pass frame_key=..."
            )
        return key
    shape = getattr(observation_space, "shape", None)
    if frame_key is None and shape is not None and len(shape) in (3, 4) and shape[-1] == 3:
        return None  # the observation is the image itself
    raise ValueError(
        f"EQARMReward: cannot find frames in the observations of {env_name} "
        f"({observation_space}); wrap an env with image observations or a Dict with a frame key"
    )


@dataclass
class RewardShaping:
    """How a judgement becomes a reward.

    ``mode="normalized"``: score / 10, in [0, 1] (default); ``"raw"``: the 0-10 score.
    The result is multiplied by ``scale``; ``add_env_reward`` adds the env's own reward of the
    final step. An episode that ends without an answer gets ``no_answer_reward``; one whose
    samples were all malformed gets ``no_valid_reward`` (both 0 by default).
    """

    mode: str = "normalized"
    scale: float = 1.0
    add_env_reward: bool = False
    no_answer_reward: float = 0.0
    no_valid_reward: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in REWARD_MODES:
            raise ValueError(f"reward mode must be 'normalized' or 'raw', got {self.mode!r}")

    @classmethod
    def from_config(cls, config: ScoringConfig) -> RewardShaping:
        """The shaping a :class:`ScoringConfig` names."""
        return cls(
            config.reward_mode,
            config.reward_scale,
            config.add_env_reward,
            config.no_answer_reward,
            config.no_valid_reward,
        )

    def reward(self, score: float | None, env_reward: float) -> float:
        """The reward for an aggregated score (None: no valid sample)."""
        if score is None:
            value = self.no_valid_reward
        else:
            value = (score / 10.0 if self.mode == "normalized" else score) * self.scale
        return float(value + (env_reward if self.add_env_reward else 0.0))


@dataclass
class EpisodeState:
    """One env's current episode: its recorder, question and identity."""

    recorder: EpisodeMemoryRecorder
    episode: int = -1
    question: str | None = None
    question_id: str | None = None

    def begin(self, name_prefix: str) -> None:
        """Start recording the next episode."""
        self.episode += 1
        self.question = self.question_id = None
        name = f"{name_prefix}-ep{self.episode:06d}"
        self.recorder.start(name if self.recorder.out_dir else None)

    def observe(
        self, frames: np.ndarray, question: Any, question_id: Any, *, final: bool = False
    ) -> None:
        """Record a step's frame(s) and remember the question once it is known.

        ``final``: the observation of the step that ended the episode. It comes after the
        agent's last decision (the answer), so the agent never saw it and its frames are not
        recorded: the reward model judges exactly the frames the agent answered from, each once
        (an episodic env returns its keyframes again with the answer; a stream env its last
        frame). Its question and id still count.
        """
        if not final:
            for frame in frames:
                self.recorder.add(frame)
        if isinstance(question, str) and question and self.question is None:
            self.question = question
        if question_id is not None and self.question_id is None:
            self.question_id = str(question_id)

    def instance(self, name_prefix: str, answer: str, reasoning: Any) -> EQAInstance:
        """The finished episode as an instance (keyframes are chosen by the reward model)."""
        steps = split_reasoning(reasoning) if isinstance(reasoning, str) else list(reasoning or [])
        return EQAInstance(
            question_id=self.question_id or f"{name_prefix}-ep{self.episode:06d}",
            question=self.question or "",
            predicted_answer=answer,
            reasoning_steps=[str(s) for s in steps],
            episode_id=f"{name_prefix}-ep{self.episode:06d}",
        )


class ModelHandle:
    """The reward model a wrapper uses: given, or created lazily from a path/id or a factory.

    The wrapper closes only a model it created itself.
    """

    def __init__(self, spec: EQARewardModel | str | Callable[[], EQARewardModel], **load: Any):
        if not isinstance(spec, (EQARewardModel, str)) and not callable(spec):
            raise TypeError(
                "reward_model must be an EQARewardModel, a path or hub id, or a factory; "
                f"got {type(spec).__name__}"
            )
        self.spec, self.load = spec, load
        self._model = spec if isinstance(spec, EQARewardModel) else None
        self.owned = self._model is None

    @property
    def model(self) -> EQARewardModel:
        """The model, created on first use."""
        if self._model is None:
            if isinstance(self.spec, str):
                self._model = EQARewardModel.from_pretrained(self.spec, **self.load)
            else:
                self._model = self.spec()
        return self._model

    def close(self) -> None:
        """Close the model if this handle created it."""
        if self.owned and self._model is not None:
            self._model.close()
            self._model = None


@dataclass
class RewardSetup:
    """What both reward wrappers (and the habitat measure) are built from: the scoring config
    (sampling, keyframes, shaping, sources), the shaping it names, and the model."""

    config: ScoringConfig
    shaping: RewardShaping
    handle: ModelHandle

    @classmethod
    def build(
        cls,
        reward_model: EQARewardModel | str | Callable[[], EQARewardModel],
        config: ScoringConfig,
        model_kwargs: dict[str, Any] | None = None,
    ) -> RewardSetup:
        """From a config; ``model_kwargs`` open a model given by path or hub id."""
        handle = ModelHandle(reward_model, **(model_kwargs or {}))
        return cls(config, RewardShaping.from_config(config), handle)

    @property
    def sources(self) -> dict[str, str]:
        """Where the question, answer, reasoning and question id are read."""
        return self.config.sources()


def score_episodes(
    handle: ModelHandle,
    items: Sequence[tuple[EQAInstance, EpisodeMemory]],
    config: ScoringConfig,
    seed: int | None,
) -> list[Judgement]:
    """Score finished episodes in one reward-model call (keyframes picked from each memory);
    ``seed`` replaces the config's (a wrapper's seed of this episode)."""
    for inst, memory in items:
        inst.keyframe_indices = memory.keyframes(config.num_keyframes, config.keyframe_method)
    return handle.model.score(
        [inst for inst, _ in items],
        config=ScoringConfig.from_options(config, seed=seed),
        memories=[memory for _, memory in items],
    )


def answer_text(answer: Any, where: str) -> str | None:
    """The answer an episode ended with; None when there is none (absent or blank text).

    ``where`` names the answer in the error (wrapper, sub-env or episode, and the source):
    anything other than text is a :class:`TypeError`, never silently "no answer".
    """
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return None
    if not isinstance(answer, str):
        raise TypeError(f"{where} must be text, got {type(answer).__name__}")
    return answer


def unanswered(shaping: RewardShaping, answer_source: str) -> tuple[float, dict[str, Any]]:
    """The reward and ``info["eqarm"]`` of an episode that ended without an answer."""
    reward = shaping.no_answer_reward
    reason = f"the episode ended without an answer (nothing at {answer_source})"
    return reward, no_answer_info(reason, reward)


@dataclass
class FinishedEpisode:
    """An answered episode taken off its recorder, so it can be scored later or elsewhere.

    ``steps``: the episode step of each recorded frame; ``label`` names the episode in errors.
    """

    instance: EQAInstance
    memory: EpisodeMemory
    steps: list[int]
    env_reward: float
    label: str


def finish_episode(
    state: EpisodeState,
    name_prefix: str,
    answer: str,
    reasoning: Any,
    env_reward: float,
    where: str = "",
) -> FinishedEpisode:
    """The answered episode of ``state`` as a :class:`FinishedEpisode` (``where``: a sub-env)."""
    instance = state.instance(name_prefix, answer, reasoning)
    label = f"{where}episode {state.episode} (question {instance.question_id!r})"
    steps = list(state.recorder.step_indices)
    return FinishedEpisode(instance, state.recorder.memory(), steps, env_reward, label)


def score_finished(
    setup: RewardSetup,
    episodes: Sequence[FinishedEpisode],
    seed: int | None,
    timings: bool,
    who: str,
) -> list[tuple[float, dict[str, Any], Judgement]]:
    """Score finished episodes in one reward-model call: ``(reward, info, judgement)`` each.

    Picks keyframes of each recorded memory, shapes each reward and fills ``info["eqarm"]``
    (with the episode steps of the keyframes). Every wrapper (single env, vector env, the
    habitat ``eqarm_reward`` measure) scores through here; a failing call is re-raised as a
    :class:`RuntimeError` naming ``who`` and the episodes.
    """
    setup.handle.model  # noqa: B018 - load a lazily created model outside the timed call
    t0 = time.perf_counter()
    items = [(episode.instance, episode.memory) for episode in episodes]
    try:
        judgements = score_episodes(setup.handle, items, setup.config, seed)
    except Exception as err:
        labels = "; ".join(episode.label for episode in episodes)
        raise RuntimeError(f"{who}: scoring {labels} failed: {type(err).__name__}: {err}") from err
    latency = time.perf_counter() - t0
    out = []
    for episode, judgement in zip(episodes, judgements, strict=True):
        reward = setup.shaping.reward(judgement.score, episode.env_reward)
        details = eqarm_info(judgement, reward, latency, timings)
        details["keyframe_steps"] = [episode.steps[i] for i in judgement.keyframe_indices]
        out.append((reward, details, judgement))
    return out


def score_answered_episode(
    setup: RewardSetup,
    state: EpisodeState,
    name_prefix: str,
    answer: str,
    reasoning: Any,
    seed: int | None,
    env_reward: float,
    timings: bool,
    who: str = "EQARMReward",
) -> tuple[float, dict[str, Any], EQAInstance, Judgement]:
    """Score one answered episode now: ``(reward, info, instance, judgement)``.

    :func:`finish_episode` then :func:`score_finished`; the single-env wrapper and the
    habitat ``eqarm_reward`` measure score through here.
    """
    episode = finish_episode(state, name_prefix, answer, reasoning, env_reward)
    ((reward, details, judgement),) = score_finished(setup, [episode], seed, timings, who)
    return reward, details, episode.instance, judgement


def eqarm_info(
    judgement: Judgement, reward: float, latency_s: float, timings: bool
) -> dict[str, Any]:
    """What ``info["eqarm"]`` holds for a scored episode."""
    info = {
        "status": "scored" if judgement.score is not None else "no_valid_sample",
        "reward": reward,
        "score": judgement.score,
        "critiques": judgement.critiques,
        "scores": judgement.scores,
        "n_valid": judgement.n_valid,
        "k": len(judgement.samples),
        "keyframe_indices": judgement.keyframe_indices,
        "question_id": judgement.question_id,
        "prompt_id": judgement.prompt_id,
    }
    if timings:
        info["latency_s"] = latency_s
    return info


def no_answer_info(reason: str, reward: float) -> dict[str, Any]:
    """What ``info["eqarm"]`` holds for an episode that ended without an answer."""
    return {"status": "no_answer", "reason": reason, "reward": reward, "score": None}
