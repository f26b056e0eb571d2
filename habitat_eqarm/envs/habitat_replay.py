"""``EQARMReplaySim-v0``: a habitat ``Simulator`` that replays a recorded episode memory.

It lets the habitat task pipeline (dataset, task, actions, sensors, measures, ``habitat.Env``)
run on OpenEQA's episodic-memory setting with no scene assets: each episode's memory (an
OpenEQA folder or video, :class:`~habitat_eqarm.data.episode.EpisodeMemory`) is shown frame by
frame as the agent's ``rgb`` (and ``depth``) sensors. A recording cannot be steered, so every
navigation action moves on ``frames_per_step`` frames along it; after the last frame the sim
holds it and reports :attr:`EQARMReplaySim.memory_exhausted`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from habitat_eqarm.data.episode import DEPTH_UNITS_PER_METRE, EpisodeMemory
from habitat_eqarm.envs.habitat_deps import missing_habitat_error

try:
    from gym import spaces
    from habitat.config.default import get_agent_config
    from habitat.core.registry import registry
    from habitat.core.simulator import AgentState, Sensor, SensorSuite, SensorTypes, Simulator
    from habitat.sims.habitat_simulator.actions import HabitatSimActions
except ImportError as err:
    raise missing_habitat_error(err) from err

#: Recorded frames decoded per decoder call (sequential replay then decodes each frame once).
READ_AHEAD = 8
REPLAYABLE = {"HabitatSimRGBSensor": "rgb", "HabitatSimDepthSensor": "depth"}


def _resize(image: np.ndarray, height: int, width: int, nearest: bool) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


class ReplayRGBSensor(Sensor):
    """The recorded frame, resized to the sensor's ``height`` x ``width``."""

    def __init__(self, config: Any, uuid: str) -> None:
        self._uuid = uuid
        super().__init__(config=config)

    def _get_uuid(self, *args: Any, **kwargs: Any) -> str:
        return self._uuid

    def _get_sensor_type(self, *args: Any, **kwargs: Any):
        return SensorTypes.COLOR

    def _get_observation_space(self, *args: Any, **kwargs: Any):
        shape = (self.config.height, self.config.width, 3)
        return spaces.Box(low=0, high=255, shape=shape, dtype=np.uint8)

    def get_observation(self, *args: Any, frame: np.ndarray, **kwargs: Any):
        return _resize(frame, self.config.height, self.config.width, nearest=False)


class ReplayDepthSensor(ReplayRGBSensor):
    """The recorded depth map in metres ``(H, W, 1)`` float32, clipped (and normalised) as
    habitat's depth sensor config says."""

    units_per_metre: float | None = None

    def _get_sensor_type(self, *args: Any, **kwargs: Any):
        return SensorTypes.DEPTH

    def _get_observation_space(self, *args: Any, **kwargs: Any):
        c = self.config
        low, high = (0.0, 1.0) if c.normalize_depth else (c.min_depth, c.max_depth)
        return spaces.Box(low=low, high=high, shape=(c.height, c.width, 1), dtype=np.float32)

    def get_observation(self, *args: Any, memory: EpisodeMemory, index: int, **kwargs: Any):
        c = self.config
        raw = _resize(memory.depth([index])[0], c.height, c.width, nearest=True)
        metres = raw.astype(np.float32) / np.float32(self.units_per_metre)
        metres = np.clip(metres, c.min_depth, c.max_depth)
        if c.normalize_depth:
            metres = (metres - c.min_depth) / (c.max_depth - c.min_depth)
        return metres[..., None].astype(np.float32)


@registry.register_simulator(name="EQARMReplaySim-v0")
class EQARMReplaySim(Simulator):
    """Replays each episode's ``episode_path`` (see module doc); config
    :class:`~habitat_eqarm.envs.habitat_config.EQARMReplaySimConfig`."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.habitat_config = config
        agent = get_agent_config(config)
        sensors = []
        for name, sensor_config in agent.sim_sensors.items():
            kind = REPLAYABLE.get(sensor_config.type)
            if kind is None:
                raise ValueError(
                    f"EQARMReplaySim-v0: sensor {name!r} is a {sensor_config.type}; a recording "
                    f"can only replay {sorted(REPLAYABLE)}"
                )
            uuid = sensor_config.get("uuid") or kind
            cls = ReplayDepthSensor if kind == "depth" else ReplayRGBSensor
            sensors.append(cls(sensor_config, uuid))
        self._sensor_suite = SensorSuite(sensors)
        self._action_space = spaces.Discrete(len(HabitatSimActions))
        self.memory: EpisodeMemory | None = None
        self._memory_path: str | None = None
        self.frame_index = 0
        self.memory_exhausted = False
        self._chunk_start: int | None = None
        self._chunk: np.ndarray | None = None

    @property
    def sensor_suite(self) -> SensorSuite:
        return self._sensor_suite

    @property
    def action_space(self):
        return self._action_space

    def reconfigure(self, config: Any, episode: Any = None) -> None:
        """Open the episode's memory (kept open while consecutive episodes share it)."""
        self.habitat_config = config
        if episode is None:
            return
        path = getattr(episode, "episode_path", None)
        if not path:
            raise ValueError(
                f"EQARMReplaySim-v0: episode {episode.episode_id!r} has no episode_path to replay"
            )
        if path != self._memory_path:
            self.memory, self._memory_path = EpisodeMemory.from_path(path), path
            self._chunk_start, self._chunk = None, None
        self._set_depth_units(getattr(episode, "source", "other"))

    def _set_depth_units(self, source: str) -> None:
        units = self.habitat_config.get("depth_units_per_metre")
        units = units or DEPTH_UNITS_PER_METRE.get(source)
        for sensor in self._sensor_suite.sensors.values():
            if isinstance(sensor, ReplayDepthSensor):
                if not self.memory.has_depth:
                    raise ValueError(f"EQARMReplaySim-v0: {self.memory} has no depth to replay")
                if units is None:
                    raise ValueError(
                        f"EQARMReplaySim-v0: depth units of a {source!r} episode are unknown; "
                        "set habitat.simulator.depth_units_per_metre"
                    )
                sensor.units_per_metre = float(units)

    def reset(self):
        """Back to the first recorded frame."""
        if self.memory is None:
            raise RuntimeError("EQARMReplaySim-v0: reset before any episode was configured")
        self.frame_index, self.memory_exhausted = 0, False
        return self.get_observations_at()

    def step(self, action: Any, *args: Any, **kwargs: Any):
        """Move on ``frames_per_step`` frames (``stop`` and None leave the frame as it is)."""
        if action is not None and action != HabitatSimActions.stop:
            last = len(self.memory) - 1
            nxt = self.frame_index + int(self.habitat_config.frames_per_step)
            self.memory_exhausted = nxt > last
            self.frame_index = min(nxt, last)
        return self.get_observations_at()

    def step_physics(self, dt: float) -> None:
        """Nothing moves in a recording."""

    def get_observations_at(
        self, position: Any = None, rotation: Any = None, keep_agent_at_new_pose: bool = False
    ):
        """The current frame's observations; a recording has no other viewpoints."""
        if position is not None or rotation is not None:
            raise NotImplementedError(
                "EQARMReplaySim-v0: a recording cannot be seen from elsewhere"
            )
        return self._sensor_suite.get_observations(
            memory=self.memory, index=self.frame_index, frame=self._frame(self.frame_index)
        )

    def _frame(self, index: int) -> np.ndarray:
        """Frames are decoded a chunk at a time: one decoder call for ``READ_AHEAD`` steps."""
        start = index - index % READ_AHEAD
        if self._chunk_start != start:
            stop = min(start + READ_AHEAD, len(self.memory))
            self._chunk = self.memory.frames(range(start, stop))
            self._chunk_start = start
        return self._chunk[index - start]

    def camera_pose(self) -> np.ndarray | None:
        """The recorded 4x4 camera-to-world pose of the current frame, if the memory has poses."""
        if self.memory is None or not self.memory.has_poses:
            return None
        return self.memory.poses([self.frame_index])[0]

    def get_agent_state(self, agent_id: int = 0) -> AgentState:
        """Position from the recorded pose (origin when the memory has none); rotation as given
        by the pose matrix is in :meth:`camera_pose`."""
        pose = self.camera_pose()
        position = np.zeros(3) if pose is None else np.asarray(pose[:3, 3], dtype=np.float64)
        return AgentState(position=position)

    def seed(self, seed: int) -> None:
        """A replay is deterministic."""

    def previous_step_collided(self) -> bool:
        return False

    def close(self, destroy: bool = True) -> None:
        self.memory, self._memory_path = None, None
        self._chunk_start, self._chunk = None, None
