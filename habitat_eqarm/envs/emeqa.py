"""`EMEQAEnv`: OpenEQA's episodic-memory EQA as a Gymnasium environment.

An episode is one question about one recorded episode memory. Two modes:

* ``"stream"``: each step shows the next frame of the memory (``obs["frame"]``); the agent may
  answer at any step, the last frame included; continuing past the last frame truncates the
  episode without an answer.
* ``"episodic"``: one step; ``obs["frames"]`` holds ``num_keyframes`` keyframes at once.

Action: ``{"kind": 0 (continue) | 1 (answer), "answer": str, "reasoning": str}``; reasoning
steps are separated by newlines. An answer ends the episode (terminated) and is reported in
``info["answer"]`` / ``info["reasoning_steps"]``; the env's own reward is always 0 (EQA-RM, via
:class:`~habitat_eqarm.rewards.wrapper.EQARMReward`, is the reward). Episode order is a seeded
permutation of the questions, redrawn each time every question has been asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from habitat_eqarm.data.episode import EpisodeMemory
from habitat_eqarm.data.schema import TEXT_CHARSET, EQAInstance, split_reasoning

CONTINUE, ANSWER = 0, 1
MODES = ("stream", "episodic")
MAX_QUESTION, MAX_ANSWER, MAX_REASONING = 1024, 1024, 8192


def load_episodes(
    questions: str | Sequence[EQAInstance] | None, data_root: str | None
) -> tuple[list[EQAInstance], dict[str, EpisodeMemory]]:
    """Questions and in-memory episodes from a questions JSON, instances, or the defaults.

    ``None``: OpenEQA's demo questions if the data is found, else the synthetic episode;
    ``"synthetic"``: the synthetic episode; a path: an OpenEQA-format questions JSON.
    """
    from habitat_eqarm.data.openeqa import find_openeqa_dir, load_openeqa
    from habitat_eqarm.data.synthetic import make_synthetic_episode

    if questions is None:
        found = find_openeqa_dir()
        if found is not None:
            questions, data_root = str(found / "open-eqa-demo-data.json"), data_root or str(found)
        else:
            questions = "synthetic"
    if questions == "synthetic":
        memory, instances = make_synthetic_episode()
        return instances, {instances[0].episode_id: memory}
    if isinstance(questions, str):
        return load_openeqa(questions, data_root=data_root or None, on_missing="skip"), {}
    return list(questions), {}


class EMEQAEnv(gym.Env):
    """Episodic-memory EQA over OpenEQA questions (see module doc).

    ``frame_size=(height, width)`` fixes the observation size; frames of other sizes are
    resized. None takes the first episode's size.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium API

    def __init__(
        self,
        questions: str | Sequence[EQAInstance] | None = None,
        data_root: str | None = None,
        *,
        mode: str = "stream",
        num_keyframes: int = 5,
        frame_size: tuple[int, int] | None = None,
        memories: dict[str, EpisodeMemory] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.num_keyframes, self.render_mode = mode, num_keyframes, render_mode
        self.questions, found = load_episodes(questions, data_root)
        self._memories = {**found, **(memories or {})}
        unplayable = [q.question_id for q in self.questions if not self._has_memory(q)]
        if unplayable or not self.questions:
            raise ValueError(
                f"EMEQAEnv: {len(unplayable)} of {len(self.questions)} questions have no episode "
                f"memory (e.g. {unplayable[:1]}); give data_root or memories"
            )
        first = self._memory(self.questions[0]).frame(0)
        self.frame_size = tuple(frame_size) if frame_size else first.shape[:2]
        self.observation_space = self._make_observation_space()
        self.action_space = spaces.Dict(
            {
                "kind": spaces.Discrete(2),
                "answer": spaces.Text(MAX_ANSWER, min_length=0, charset=TEXT_CHARSET),
                "reasoning": spaces.Text(MAX_REASONING, min_length=0, charset=TEXT_CHARSET),
            }
        )
        self._order: list[int] = []
        self._question: EQAInstance | None = None
        self._episode: EpisodeMemory | None = None
        self._t = 0
        self._last_frame: np.ndarray | None = None

    # -- setup ------------------------------------------------------------------------------------

    def _has_memory(self, q: EQAInstance) -> bool:
        return q.episode_id in self._memories or bool(q.episode_path)

    def _memory(self, q: EQAInstance) -> EpisodeMemory:
        if q.episode_id not in self._memories:
            self._memories[q.episode_id] = EpisodeMemory.from_path(q.episode_path)
        return self._memories[q.episode_id]

    def _make_observation_space(self) -> spaces.Dict:
        h, w = self.frame_size
        charset = set(TEXT_CHARSET).union(*(set(q.question) for q in self.questions))
        question = spaces.Text(MAX_QUESTION, min_length=0, charset=frozenset(charset))
        if self.mode == "stream":
            image = spaces.Box(0, 255, (h, w, 3), np.uint8)
            return spaces.Dict({"frame": image, "question": question})
        images = spaces.Box(0, 255, (self.num_keyframes, h, w, 3), np.uint8)
        return spaces.Dict({"frames": images, "question": question})

    def _fit(self, frames: np.ndarray) -> np.ndarray:
        if frames.shape[1:3] == tuple(self.frame_size):
            return frames
        from PIL import Image

        h, w = self.frame_size
        return np.stack(
            [np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames]
        )

    # -- gymnasium API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start the next question (``options={"question_id": ...}`` picks one)."""
        super().reset(seed=seed)
        if seed is not None:
            self._order = []
        wanted = (options or {}).get("question_id")
        if wanted is not None:
            matches = [i for i, q in enumerate(self.questions) if q.question_id == wanted]
            if not matches:
                raise ValueError(f"EMEQAEnv.reset: unknown question_id {wanted!r}")
            index = matches[0]
        else:
            if not self._order:
                self._order = [int(i) for i in self.np_random.permutation(len(self.questions))]
            index = self._order.pop(0)
        self._question = self.questions[index]
        self._episode = self._memory(self._question)
        self._t = 0
        return self._observation(), self._info()

    def step(self, action: dict[str, Any]):
        """Continue (next frame) or answer (ends the episode)."""
        if self._question is None:
            raise RuntimeError("EMEQAEnv.step called before reset")
        kind = int(action.get("kind", CONTINUE))
        if kind == ANSWER:
            answer = action.get("answer", "")
            if not isinstance(answer, str):
                raise TypeError(
                    f"EMEQAEnv.step: the answer must be text, got {type(answer).__name__}"
                )
            reasoning = action.get("reasoning", "")
            if not isinstance(reasoning, str):
                raise TypeError(
                    "EMEQAEnv.step: the reasoning must be text (steps on separate lines)"
                )
            info = self._info(answer=answer, reasoning_steps=split_reasoning(reasoning))
            return self._observation(), 0.0, True, False, info
        self._t += 1
        done = self.mode == "episodic" or self._t >= len(self._episode)
        self._t = min(self._t, len(self._episode) - 1)
        return self._observation(), 0.0, False, done, self._info()

    def render(self) -> np.ndarray | None:
        """The current frame (``render_mode="rgb_array"``)."""
        if self.render_mode == "rgb_array" and self._last_frame is not None:
            return self._last_frame
        return None

    # -- observations -----------------------------------------------------------------------------

    def keyframe_indices(self) -> list[int]:
        """The keyframes of the current episode's memory (episodic mode shows these)."""
        return self._episode.keyframes(self.num_keyframes)

    def _observation(self) -> dict[str, Any]:
        q = self._question.question
        if self.mode == "stream":
            frame = self._fit(self._episode.frames([self._t]))[0]
            self._last_frame = frame
            return {"frame": frame, "question": q}
        indices = self.keyframe_indices()
        indices += [indices[-1]] * (self.num_keyframes - len(indices))  # short episodes
        frames = self._fit(self._episode.frames(indices))
        self._last_frame = frames[-1]
        return {"frames": frames, "question": q}

    def _info(self, **extra: Any) -> dict[str, Any]:
        q = self._question
        return {
            "question_id": q.question_id,
            "episode_id": q.episode_id,
            "category": q.category,
            "source": q.source,
            "frame_index": self._t,
            "num_frames": len(self._episode),
            **extra,
        }
