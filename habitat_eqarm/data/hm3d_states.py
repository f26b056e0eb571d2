"""OpenEQA's HM3D agent-state pickles, read safely.

OpenEQA ships, for each HM3D episode history, one pickle per frame (``00000.pkl``, ...) holding
a dict: ``scene_id``, ``agent_state`` (a ``habitat_sim.agent.AgentState``: position, rotation
quaternion and per-sensor ``SixDOFPose``s), ``resolution`` ``(height, width)`` and ``hfov``
(degrees). Plain ``pickle.load`` on such a file would run whatever code the file names; we
unpickle with :class:`StateUnpickler`, which resolves only an allow-list of classes and maps the
habitat-sim and numpy-quaternion ones onto plain records here, so reading the states needs
neither habitat-sim nor numpy-quaternion, and a file asking for anything else (``os.system``,
``builtins.eval``, ...) is refused with :class:`UnsafePickleError`.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a class or function outside the allow-list."""


class StateFileError(ValueError):
    """An agent-state file is unreadable or lacks what OpenEQA's files hold; names the file."""


def _quaternion(w: float, x: float, y: float, z: float) -> np.ndarray:
    """numpy-quaternion's ``quaternion(w, x, y, z)`` as a ``(4,)`` array in w, x, y, z order."""
    return np.array([w, x, y, z], dtype=np.float64)


@dataclass
class SensorPose:
    """A sensor's pose (``habitat_sim``'s ``SixDOFPose``): position (3,), rotation wxyz (4,)."""

    position: Any = None
    rotation: Any = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        _set_fields(self, state)


@dataclass
class AgentStateRecord:
    """An agent's state (``habitat_sim``'s ``AgentState``) as plain arrays.

    ``position`` (3,), ``rotation`` (4,) in w, x, y, z order, ``sensor_states`` name -> pose.
    """

    position: Any = None
    rotation: Any = None
    sensor_states: dict[str, SensorPose] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        _set_fields(self, state)


def _set_fields(record: Any, state: Any) -> None:
    """Apply a pickled state: a dict (attrs >= 22.2), Python's ``(dict, slots)`` pair, or the
    tuple of values in field order that older attrs wrote for slotted classes."""
    if isinstance(state, tuple) and all(isinstance(s, dict) or s is None for s in state):
        merged: dict[str, Any] = {}
        for part in state:
            merged.update(part or {})
        state = merged
    elif isinstance(state, tuple) and len(state) >= 2:
        values = {"position": state[0], "rotation": state[1]}
        if isinstance(state[-1], dict) and len(state) > 2:
            values["sensor_states"] = state[-1]  # older AgentStates had velocities in between
        state = values
    if not isinstance(state, dict):
        raise UnsafePickleError(f"{type(record).__name__}: unexpected state {type(state).__name__}")
    known = set(record.__dataclass_fields__)
    for key, value in state.items():
        if key in known:  # other habitat-sim versions have fields we do not need
            setattr(record, key, value)


def _numpy_attr(*candidates: str) -> Any:
    for dotted in candidates:
        module, _, name = dotted.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {candidates} exists in this numpy")


def _allowed() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_attr(
        "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct"
    )
    scalar = _numpy_attr("numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar")
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("quaternion", "quaternion"): _quaternion,
        ("habitat_sim.agent.agent", "AgentState"): AgentStateRecord,
        ("habitat_sim.agent.agent", "SixDOFPose"): SensorPose,
        ("habitat_sim.agent", "AgentState"): AgentStateRecord,
        ("habitat_sim.agent", "SixDOFPose"): SensorPose,
        ("habitat_sim", "AgentState"): AgentStateRecord,
        ("collections", "OrderedDict"): dict,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("builtins", "object"): object,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(core, "_reconstruct")] = reconstruct
        table[(core, "scalar")] = scalar
    return table


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """Protocol 0/1's object rebuild, limited to the allowed record classes."""
    if cls not in (AgentStateRecord, SensorPose) or base is not object:
        raise UnsafePickleError(f"refusing to rebuild {cls!r} from {base!r}")
    return cls()


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles of bytes call (``_codecs.encode(text, 'latin1')``)."""
    if encoding != "latin1":
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


class StateUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the classes OpenEQA's agent-state files use."""

    _table: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if StateUnpickler._table is None:
            StateUnpickler._table = _allowed()
        try:
            return StateUnpickler._table[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: an agent-state pickle may only hold numpy "
                "arrays, quaternions and habitat-sim agent states"
            ) from None


def safe_load(data: bytes, where: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`StateUnpickler`; errors name ``where``."""
    try:
        return StateUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{where}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        reason = f"{type(err).__name__}: {err}"
        raise StateFileError(f"{where}: not a readable pickle ({reason})") from None


@dataclass
class AgentStateFile:
    """One OpenEQA HM3D frame: where the agent was and how the camera was set up."""

    path: Path
    scene_id: str
    agent_state: AgentStateRecord
    resolution: tuple[int, int]
    hfov: float

    def sensor_height(self, sensor: str = "rgb") -> float:
        """The sensor's height above the agent's base (metres), as OpenEQA configures it."""
        pose = self.agent_state.sensor_states.get(sensor)
        if pose is None or pose.position is None:
            raise StateFileError(f"{self.path}: the agent state has no {sensor!r} sensor pose")
        return float(np.asarray(pose.position)[1] - np.asarray(self.agent_state.position)[1])

    def intrinsics(self) -> np.ndarray:
        """The 4x4 pinhole intrinsics OpenEQA writes for this resolution and field of view."""
        height, width = self.resolution
        hfov = np.deg2rad(self.hfov)
        vfov = hfov * height / width
        k = np.eye(4)
        k[0, 0] = width / np.tan(hfov / 2.0) / 2.0
        k[1, 1] = height / np.tan(vfov / 2.0) / 2.0
        k[0, 2], k[1, 2] = width / 2, height / 2
        return k


def load_agent_state(path: str | os.PathLike[str]) -> AgentStateFile:
    """Read one OpenEQA agent-state pickle safely (see module doc)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise StateFileError(f"{path}: cannot read ({err.strerror or err})") from None
    record = safe_load(data, str(path))
    if not isinstance(record, dict):
        raise StateFileError(f"{path}: expected a dict, got {type(record).__name__}")
    missing = [k for k in ("scene_id", "agent_state", "resolution", "hfov") if k not in record]
    if missing:
        raise StateFileError(f"{path}: missing key(s) {', '.join(missing)}")
    state = record["agent_state"]
    if not isinstance(state, AgentStateRecord) or state.position is None:
        raise StateFileError(f"{path}: 'agent_state' is not a habitat-sim AgentState")
    try:
        height, width = (int(v) for v in record["resolution"])
        hfov = float(record["hfov"])
    except (TypeError, ValueError):
        raise StateFileError(f"{path}: bad 'resolution' or 'hfov'") from None
    return AgentStateFile(path, str(record["scene_id"]), state, (height, width), hfov)


def list_state_files(folder: str | os.PathLike[str]) -> list[Path]:
    """An episode's agent-state pickles in frame order (``*.pkl`` sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StateFileError(f"{folder}: not a folder of agent-state pickles")
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise StateFileError(f"{folder}: no '*.pkl' agent-state files")
    return files
