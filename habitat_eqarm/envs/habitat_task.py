"""habitat-lab components of EQA with a text answer: the ``OpenEQA-v0`` dataset, the
``EQARM-v0`` task, the ``EQARMAnswerAction``, the ``QuestionTextSensor`` and the
``EQARMRewardMeasure`` (uuid ``eqarm_reward``).

The measure records the rgb observations of the episode and, when the answer action is
taken, scores the answer through :class:`~habitat_eqarm.rewards.episode_scoring.RewardSetup`
and :func:`~habitat_eqarm.rewards.episode_scoring.score_answered_episode`, exactly as
:class:`~habitat_eqarm.rewards.wrapper.EQARMReward` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from habitat_eqarm.data.openeqa import load_openeqa
from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.data.schema import split_reasoning
from habitat_eqarm.envs.habitat_deps import missing_habitat_error
from habitat_eqarm.rewards.config import ScoringConfig
from habitat_eqarm.rewards.episode_scoring import (
    EpisodeState,
    RewardSetup,
    no_answer_info,
    score_answered_episode,
)

try:
    import attr
    import gym
    from habitat.core.dataset import Dataset, Episode
    from habitat.core.embodied_task import Action, EmbodiedTask, Measure
    from habitat.core.registry import registry
    from habitat.core.simulator import Sensor, SensorTypes
except ImportError as err:
    raise missing_habitat_error(err) from err


class TextSpace(gym.Space):
    """A gym (0.2x) space of strings of at most ``max_length`` characters (habitat uses gym)."""

    def __init__(self, max_length: int, charset: str | None = None, seed: int | None = None):
        self.max_length = int(max_length)
        self.charset = charset or "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        super().__init__(shape=None, dtype=None, seed=seed)

    def sample(self) -> str:
        """A random string of the charset (length 1..min(max_length, 32))."""
        n = int(self.np_random.integers(1, min(self.max_length, 32) + 1))
        return "".join(self.np_random.choice(list(self.charset), size=n))

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"


# -- dataset -------------------------------------------------------------------------------------


@attr.s(auto_attribs=True, kw_only=True)
class EQARMEpisode(Episode):
    """An OpenEQA question as a habitat episode (``scene_id`` is its ``episode_history``)."""

    question: str
    question_id: str
    answer: str | None = None
    category: str | None = None
    source: str = "other"
    episode_path: str | None = None


@registry.register_dataset(name="OpenEQA-v0")
class OpenEQADataset(Dataset):
    """OpenEQA questions (see :class:`~habitat_eqarm.envs.habitat_config.OpenEQADatasetConfig`)."""

    episodes: list[EQARMEpisode]

    def __init__(self, config: Any = None) -> None:
        self.episodes = []
        if config is None:
            return
        if config.on_missing not in ("skip", "error"):
            raise ValueError(
                f"OpenEQA-v0: on_missing must be 'skip' or 'error', got {config.on_missing!r}"
            )
        data_path = str(config.data_path).format(split=config.split)
        instances = load_openeqa(
            data_path,
            data_root=config.episodes_root,
            subset_ids=list(config.question_ids) or None,
            on_missing=config.on_missing,
        )
        if not instances:
            raise ValueError(
                f"OpenEQA-v0: no question of {data_path} has its episode under "
                f"{config.episodes_root} (set habitat.dataset.episodes_root)"
            )
        self.episodes = [
            EQARMEpisode(
                episode_id=inst.question_id,
                scene_id=inst.episode_id,
                start_position=[0.0, 0.0, 0.0],
                start_rotation=[0.0, 0.0, 0.0, 1.0],
                question=inst.question,
                question_id=inst.question_id,
                answer=inst.gt_answer,
                category=inst.category,
                source=inst.source,
                episode_path=inst.episode_path,
            )
            for inst in instances
        ]


# -- task, action, sensor ------------------------------------------------------------------------


@registry.register_task(name="EQARM-v0")
class EQARMTask(EmbodiedTask):
    """EQA with a free-text answer: active until ``EQARMAnswerAction`` is taken, or (with
    ``end_on_memory_end``) until a replay simulator has shown its last recorded frame."""

    answer: str | None = None
    reasoning_steps: list[str] | None = None

    def reset(self, episode: Episode):
        self.answer, self.reasoning_steps = None, None
        return super().reset(episode)

    def _check_episode_is_active(self, *args: Any, action: Any, episode: Episode, **kwargs: Any):
        if self.answer is not None:
            return False
        ended = getattr(self._sim, "memory_exhausted", False)
        return not (self._config.end_on_memory_end and ended)


@registry.register_task_action
class EQARMAnswerAction(Action):
    """Answer in text: ``{"answer": str, "reasoning": str}`` (one reasoning step per line)."""

    def __init__(self, *args: Any, sim: Any, config: Any, **kwargs: Any) -> None:
        self._sim, self._config = sim, config

    def reset(self, *args: Any, task: EQARMTask, **kwargs: Any) -> None:
        task.answer, task.reasoning_steps = None, None

    def step(self, *args: Any, answer: str, reasoning: str = "", task: EQARMTask, **kwargs: Any):
        if not isinstance(answer, str) or not isinstance(reasoning, str):
            raise TypeError("EQARMAnswerAction: answer and reasoning must be text")
        task.answer, task.reasoning_steps = answer, split_reasoning(reasoning)
        return self._sim.get_observations_at()

    @property
    def action_space(self) -> gym.spaces.Dict:
        return gym.spaces.Dict(
            {
                "answer": TextSpace(self._config.max_answer_length),
                "reasoning": TextSpace(self._config.max_reasoning_length),
            }
        )


@registry.register_sensor
class QuestionTextSensor(Sensor):
    """The episode's question as text (observation key ``question``)."""

    def __init__(self, *args: Any, config: Any, **kwargs: Any) -> None:
        super().__init__(config=config)

    def _get_uuid(self, *args: Any, **kwargs: Any) -> str:
        return "question"

    def _get_sensor_type(self, *args: Any, **kwargs: Any):
        return SensorTypes.TEXT

    def _get_observation_space(self, *args: Any, **kwargs: Any):
        return TextSpace(self.config.max_length)

    def get_observation(self, *args: Any, episode: EQARMEpisode, **kwargs: Any) -> str:
        return episode.question


# -- measure -------------------------------------------------------------------------------------

#: Where the measure reads an episode: the question sensor, the answer action, the episode.
HABITAT_SOURCES = {
    "question_source": "obs.question",
    "answer_source": "action.answer",
    "reasoning_source": "action.reasoning",
    "question_id_source": "info.question_id",
}


def _setup_from_config(config: Any) -> RewardSetup:
    """The measure's reward setup: the config node's scoring fields, the habitat sources."""
    scoring = ScoringConfig.of(config)
    scoring = ScoringConfig.from_options(scoring, add_env_reward=False, **HABITAT_SOURCES)
    model_kwargs = {
        "backend": config.backend,
        "num_keyframes": scoring.num_keyframes,
        "keyframe_method": scoring.keyframe_method,
        "max_pixels": scoring.max_pixels,
    }
    return RewardSetup.build(str(config.reward_model), scoring, model_kwargs)


@registry.register_measure
class EQARMRewardMeasure(Measure):
    """EQA-RM's reward for the episode's answer (uuid ``eqarm_reward``).

    The metric is ``no_answer_reward`` until the answer action is taken, then the shaped
    reward (score / 10 by default). :attr:`details` holds what ``info["eqarm"]`` holds for
    :class:`~habitat_eqarm.rewards.wrapper.EQARMReward`. :meth:`set_reward_model` hands in a
    loaded :class:`~habitat_eqarm.rewards.model.EQARewardModel` instead of ``reward_model``.
    """

    cls_uuid = "eqarm_reward"

    def __init__(self, *args: Any, config: Any, **kwargs: Any) -> None:
        self._config = config
        self.setup = _setup_from_config(config)
        self.state = EpisodeState(EpisodeMemoryRecorder(config.max_frames))
        self.details: dict[str, Any] | None = None
        self._scored = False
        super().__init__()

    def set_reward_model(self, model: Any) -> None:
        """Score with an already loaded reward model (the measure does not close it)."""
        from habitat_eqarm.rewards.episode_scoring import ModelHandle

        self.setup.handle.close()
        self.setup.handle = ModelHandle(model)

    def _get_uuid(self, *args: Any, **kwargs: Any) -> str:
        return self.cls_uuid

    def _observe(self, observations: Any, episode: EQARMEpisode, final: bool = False) -> None:
        frame = np.asarray(observations[self._config.rgb_uuid])[..., :3]
        self.state.observe(frame[None], episode.question, episode.question_id, final=final)

    def reset_metric(self, *args: Any, episode: EQARMEpisode, observations: Any, **kwargs: Any):
        self.state.begin("eqarm-habitat")
        self._observe(observations, episode)
        self._scored = False
        reward = float(self._config.no_answer_reward)
        self.details = no_answer_info("the episode has not been answered yet", reward)
        self._metric = reward

    def update_metric(
        self, *args: Any, episode: EQARMEpisode, task: EQARMTask, observations: Any, **kwargs: Any
    ):
        if self._scored:
            return
        # the observation after the answer action was never seen by the agent: not judged
        self._observe(observations, episode, final=task.answer is not None)
        if task.answer is None:
            return
        self._scored = True
        self.state.recorder.finish()
        seed = self._config.seed
        seed = None if seed is None else int(seed) + self.state.episode
        reward, details, _, _ = score_answered_episode(
            self.setup,
            self.state,
            "eqarm-habitat",
            task.answer,
            task.reasoning_steps,
            seed,
            env_reward=0.0,
            timings=True,
            who="eqarm_reward measure",
        )
        self._metric, self.details = reward, details
