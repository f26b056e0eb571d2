"""`HabitatEQAEnv`: a ``gymnasium.Env`` over a ``habitat.Env`` running the ``EQARM-v0`` task.

habitat-lab's own ``habitat.gym`` speaks gym 0.23 and rejects text actions, so this is the one
bridge from habitat to gymnasium here. Action: ``{"kind": i, "answer": str, "reasoning": str}``
where ``kind`` indexes the task's actions in config order (``action_names``; by default
``move_forward``, ``turn_left``, ``turn_right``, ``eqarm_answer``); ``answer``/``reasoning``
matter only for the answer action. Observations: the sim's ``rgb`` (and ``depth``) and the
``question`` text. An answer ends the episode (terminated) and is reported in
``info["answer"]`` / ``info["reasoning_steps"]``, which is what
:class:`~habitat_eqarm.rewards.wrapper.EQARMReward` reads by default; habitat ending the
episode otherwise (step limit, replay at its end) truncates it. ``info["metrics"]`` holds
habitat's measures. The env's own reward is 0: wrap it with ``EQARMReward`` (or keep the
``eqarm_reward`` measure in the task config) for EQA-RM's.

``record_dir`` records every episode (rgb, depth, camera pose) with
:class:`~habitat_eqarm.data.recorder.EpisodeMemoryRecorder` in OpenEQA's folder layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from habitat_eqarm.data.episode import DEPTH_UNITS_PER_METRE
from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.envs import habitat_plugin
from habitat_eqarm.envs.emeqa import MAX_ANSWER, MAX_QUESTION, MAX_REASONING, TEXT_CHARSET
from habitat_eqarm.envs.habitat_task import EQARMAnswerAction, TextSpace


def _gymnasium_space(name: str, space: Any, charset: frozenset[str]) -> gym.Space:
    if isinstance(space, TextSpace):
        return spaces.Text(max(space.max_length, MAX_QUESTION), min_length=0, charset=charset)
    if type(space).__name__ == "Box":
        return spaces.Box(space.low, space.high, space.shape, space.dtype)
    raise TypeError(f"HabitatEQAEnv: observation {name!r} has a {space}, which has no bridge")


class HabitatEQAEnv(gym.Env):
    """EQA with a text answer in a habitat env, as a gymnasium env (see module doc).

    Give a ``config`` (a composed habitat config, or the name of a YAML of ours or a path, with
    ``overrides``) or an existing ``habitat_env``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium API

    def __init__(
        self,
        config: Any = None,
        overrides: Sequence[str] | None = None,
        *,
        habitat_env: Any = None,
        render_mode: str | None = None,
        record_dir: str | None = None,
        record_format: str = "folder",
    ) -> None:
        import habitat

        if habitat_env is None:
            if config is None or isinstance(config, str):
                name = config or habitat_plugin.DEFAULT_BENCHMARK
                config = habitat_plugin.get_config(name, overrides)
            habitat_env = habitat.Env(config)
        self.habitat_env = habitat_env
        self.render_mode = render_mode
        self.action_names = list(habitat_env.task.actions)
        answers = [
            n for n, a in habitat_env.task.actions.items() if isinstance(a, EQARMAnswerAction)
        ]
        if not answers:
            raise ValueError(
                f"HabitatEQAEnv: the task has no EQARMAnswerAction among {self.action_names}; "
                "add eqarm_answer to habitat.task.actions"
            )
        self.answer_action = answers[0]
        self.observation_space = self._observation_space()
        self.action_space = spaces.Dict(
            {
                "kind": spaces.Discrete(len(self.action_names)),
                "answer": spaces.Text(MAX_ANSWER, min_length=0, charset=TEXT_CHARSET),
                "reasoning": spaces.Text(MAX_REASONING, min_length=0, charset=TEXT_CHARSET),
            }
        )
        self.recorder = EpisodeMemoryRecorder(out_dir=record_dir, write_format=record_format)
        self._recording = record_dir is not None
        self._last_obs: dict[str, Any] | None = None
        self._steps = 0
        self._episodes_played = -1
        self._order: list[int] = []

    def _observation_space(self) -> spaces.Dict:
        episodes = self.habitat_env.episodes
        charset = set(TEXT_CHARSET).union(*(set(getattr(e, "question", "")) for e in episodes))
        charset = frozenset(charset)
        return spaces.Dict(
            {
                name: _gymnasium_space(name, space, charset)
                for name, space in self.habitat_env.observation_space.spaces.items()
            }
        )

    # -- gymnasium API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Next episode of a seeded permutation of the dataset, redrawn each time every episode
        was played (habitat's own episode iterator is not used, so seeds reproduce);
        ``options={"episode_id": ...}`` picks one."""
        super().reset(seed=seed)
        env = self.habitat_env
        if seed is not None:
            self._order = []
        wanted = (options or {}).get("episode_id")
        if wanted is not None:
            matches = [e for e in env.episodes if e.episode_id == wanted]
            if not matches:
                raise ValueError(f"HabitatEQAEnv.reset: unknown episode_id {wanted!r}")
            episode = matches[0]
        else:
            if not self._order:
                self._order = [int(i) for i in self.np_random.permutation(len(env.episodes))]
            episode = env.episodes[self._order.pop(0)]
        env.current_episode = episode
        obs = self._convert(env.reset())
        self._steps = 0
        if self._recording:
            self.recorder.start(self._record_name(), intrinsics=None)
        self._record(obs)
        return obs, self._info()

    def step(self, action: dict[str, Any]):
        """One habitat step: a navigation action, or the answer (ends the episode)."""
        kind = int(action.get("kind", 0))
        if not 0 <= kind < len(self.action_names):
            last = len(self.action_names) - 1
            raise ValueError(f"HabitatEQAEnv.step: kind {kind} not in 0..{last}")
        name = self.action_names[kind]
        extra: dict[str, Any] = {}
        if name == self.answer_action:
            answer, reasoning = action.get("answer", ""), action.get("reasoning", "")
            args = {"answer": answer, "reasoning": reasoning}
            habitat_action = {"action": name, "action_args": args}
        else:
            habitat_action = {"action": name}
        obs = self._convert(self.habitat_env.step(habitat_action))
        self._steps += 1
        self._record(obs)
        task = self.habitat_env.task
        terminated = task.answer is not None
        truncated = self.habitat_env.episode_over and not terminated
        if terminated:
            extra = {"answer": task.answer, "reasoning_steps": list(task.reasoning_steps)}
        if (terminated or truncated) and self._recording:
            extra["recorded_to"] = str(self.recorder.finish())
        return obs, 0.0, terminated, truncated, self._info(**extra)

    def render(self) -> np.ndarray | None:
        """The current rgb frame (``render_mode="rgb_array"``)."""
        if self.render_mode == "rgb_array" and self._last_obs is not None:
            return self._last_obs.get("rgb")
        return None

    def close(self) -> None:
        """Close the habitat env and drop an unfinished recording."""
        self.recorder.close()
        self.habitat_env.close()
        super().close()

    # -- internals --------------------------------------------------------------------------------

    def _convert(self, obs: Any) -> dict[str, Any]:
        out = {key: obs[key] for key in self.observation_space.spaces}
        self._last_obs = out
        return out

    def _info(self, **extra: Any) -> dict[str, Any]:
        episode = self.habitat_env.current_episode
        metrics = dict(self.habitat_env.get_metrics())
        return {
            "question_id": getattr(episode, "question_id", episode.episode_id),
            "episode_id": episode.episode_id,
            "step": self._steps,
            "metrics": metrics,
            **extra,
        }

    def _record_name(self) -> str:
        """``<episode id>-<n>``: the n-th episode this env played (names never collide)."""
        self._episodes_played += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.habitat_env.current_episode.episode_id)
        return f"{safe}-{self._episodes_played:06d}"

    def _record(self, obs: dict[str, Any]) -> None:
        if not self._recording:
            return
        depth = obs.get("depth")
        if depth is not None:
            depth = self._depth_units(np.asarray(depth)[..., 0])
        self.recorder.add(obs["rgb"][..., :3], depth, self._camera_pose())

    def _depth_units(self, depth: np.ndarray) -> np.ndarray:
        """Depth observations as OpenEQA's HM3D PNGs store them (uint16, metres / 10 * 65535)."""
        agent = self.habitat_env.sim.habitat_config.agents_order[0]
        sensor = next(
            s
            for s in self.habitat_env.sim.habitat_config.agents[agent].sim_sensors.values()
            if "Depth" in s.type
        )
        metres = depth
        if sensor.normalize_depth:
            metres = depth * (sensor.max_depth - sensor.min_depth) + sensor.min_depth
        return np.clip(np.round(metres * DEPTH_UNITS_PER_METRE["hm3d"]), 0, 65535).astype(np.uint16)

    def _camera_pose(self) -> np.ndarray | None:
        sim = self.habitat_env.sim
        if hasattr(sim, "camera_pose"):
            return sim.camera_pose()
        state = sim.get_agent_state()
        sensor = state.sensor_states.get("rgb") if getattr(state, "sensor_states", None) else None
        source = sensor or state
        import quaternion

        pose = np.eye(4)
        pose[:3, :3] = quaternion.as_rotation_matrix(source.rotation)
        pose[:3, 3] = np.asarray(source.position)
        return pose
