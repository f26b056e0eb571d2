"""Render OpenEQA's HM3D episode histories with habitat-sim from its agent-state pickles.

Each episode folder of OpenEQA's ``open-eqa-hm3d-states-v0`` holds one pickle per frame (read
safely by :func:`habitat_eqarm.data.hm3d_states.load_agent_state`). We build one habitat-sim
simulator for the episode's scene with an rgb and a depth camera of the recorded resolution,
field of view and height, put the agent in each recorded state, and write rgb, depth (OpenEQA's
HM3D convention: uint16, metres / 10 * 65535) and the camera pose through
:class:`~habitat_eqarm.data.recorder.EpisodeMemoryRecorder`, in OpenEQA's folder layout.
Needs habitat-sim (conda); everything else here reads no scene.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from habitat_eqarm.data.episode import DEPTH_UNITS_PER_METRE
from habitat_eqarm.data.hm3d_states import (
    AgentStateFile,
    StateFileError,
    list_state_files,
    load_agent_state,
)
from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
from habitat_eqarm.envs.habitat_deps import missing_habitat_error

try:
    import habitat_sim
    import quaternion
except ImportError as err:
    raise missing_habitat_error(err) from err


def find_scene(scene_id: str, scene_root: str | os.PathLike[str]) -> Path:
    """The scene file a state's ``scene_id`` names: as given, under ``scene_root``, or found by
    its file name below ``scene_root``."""
    root = Path(scene_root)
    given = Path(scene_id)
    candidates = [given, root / scene_id, root / given.parent.name / given.name]
    for cand in candidates:
        if cand.is_file():
            return cand
    found = sorted(root.rglob(given.name)) if root.is_dir() else []
    if found:
        return found[0]
    tried = ", ".join(str(c) for c in candidates)
    raise StateFileError(f"scene {scene_id!r} not found (tried {tried} and {root}/**/{given.name})")


def _simulator(first: AgentStateFile, scene: Path):
    height, width = first.resolution
    sensor_height = first.sensor_height("rgb")
    specs = []
    kinds = {"rgb": habitat_sim.SensorType.COLOR, "depth": habitat_sim.SensorType.DEPTH}
    for uuid, kind in kinds.items():
        spec = habitat_sim.CameraSensorSpec()
        spec.uuid, spec.sensor_type = uuid, kind
        spec.resolution, spec.hfov = [height, width], first.hfov
        spec.position = [0.0, sensor_height, 0.0]
        specs.append(spec)
    sim_config = habitat_sim.SimulatorConfiguration()
    sim_config.scene_id = str(scene)
    agent_config = habitat_sim.agent.AgentConfiguration()
    agent_config.sensor_specifications = specs
    return habitat_sim.Simulator(habitat_sim.Configuration(sim_config, [agent_config]))


def _camera_pose(agent) -> np.ndarray:
    sensor = agent.get_state().sensor_states["rgb"]
    pose = np.eye(4)
    pose[:3, :3] = quaternion.as_rotation_matrix(sensor.rotation)
    pose[:3, 3] = np.asarray(sensor.position, dtype=np.float64)
    return pose


def render_hm3d_episode(
    states_dir: str | os.PathLike[str],
    scene_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    rgb_only: bool = False,
    on_frame: Callable[[int], None] | None = None,
) -> Path:
    """Render one episode's agent states into the OpenEQA folder ``out`` (atomically)."""
    files = list_state_files(states_dir)
    first = load_agent_state(files[0])
    out = Path(out)
    sim = _simulator(first, find_scene(first.scene_id, scene_root))
    recorder = EpisodeMemoryRecorder(2, out_dir=out.parent, max_pending=8)
    intrinsics = None if rgb_only else {"color": first.intrinsics(), "depth": first.intrinsics()}
    recorder.start(out.name, intrinsics=intrinsics)
    try:
        agent = sim.get_agent(0)
        for n, path in enumerate(files, 1):
            state = load_agent_state(path)
            position = np.asarray(state.agent_state.position, dtype=np.float64)
            rotation = quaternion.quaternion(*np.asarray(state.agent_state.rotation, np.float64))
            agent.set_state(habitat_sim.AgentState(position=position, rotation=rotation))
            obs = sim.get_sensor_observations()
            depth = None
            if not rgb_only:
                depth = np.clip(obs["depth"] * DEPTH_UNITS_PER_METRE["hm3d"], 0, 65535).astype(
                    np.uint16
                )
            pose = None if rgb_only else _camera_pose(agent)
            recorder.add(np.ascontiguousarray(obs["rgb"][..., :3]), depth, pose)
            if on_frame is not None:
                on_frame(n)
        return recorder.finish()
    finally:
        recorder.close()
        sim.close()
