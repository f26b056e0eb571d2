"""OpenEQA's HM3D agent-state pickles, loaded with the restricted unpickler."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

from habitat_eqarm.data.hm3d_states import (
    StateFileError,
    UnsafePickleError,
    list_state_files,
    load_agent_state,
)


def _pickle_like_openeqa(monkeypatch, state_style: str) -> bytes:
    """Pickle bytes naming habitat_sim.agent.agent.AgentState and quaternion.quaternion, made
    with look-alike classes registered under those module names (a test double of the writer)."""
    agent_mod = types.ModuleType("habitat_sim.agent.agent")
    quat_mod = types.ModuleType("quaternion")

    class quaternion:
        def __init__(self, w, x, y, z):
            self.c = (w, x, y, z)

        def __reduce__(self):
            return (quaternion, self.c)

    class SixDOFPose:
        __slots__ = ("position", "rotation")

        def __getstate__(self):  # attrs >= 22.2 writes a dict for slotted classes
            return {"position": self.position, "rotation": self.rotation}

    class AgentState:
        __slots__ = ("position", "rotation", "sensor_states")

        def __getstate__(self):
            if state_style == "tuple":  # older attrs: values in field order
                return (self.position, self.rotation, self.sensor_states)
            return {s: getattr(self, s) for s in self.__slots__}

    for cls, mod in ((quaternion, quat_mod), (SixDOFPose, agent_mod), (AgentState, agent_mod)):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    for parent in ("habitat_sim", "habitat_sim.agent"):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, "habitat_sim.agent.agent", agent_mod)
    monkeypatch.setitem(sys.modules, "quaternion", quat_mod)
    sensor = SixDOFPose()
    sensor.position, sensor.rotation = np.array([1.0, 1.5, 2.0]), quaternion(1, 0, 0, 0)
    state = AgentState()
    state.position = np.array([1.0, 0.1, 2.0], dtype=np.float32)
    state.rotation = quaternion(0.7071, 0, 0.7071, 0)
    state.sensor_states = {"rgb": sensor, "depth": sensor}
    record = {"scene_id": "hm3d/val/00800-ab/ab.basis.glb", "agent_state": state,
              "resolution": (1080, 1920), "hfov": 90}  # fmt: skip
    return pickle.dumps(record, protocol=4)


@pytest.mark.parametrize("state_style", ["dict", "tuple"])
def test_openeqa_state_pickle_loads_without_habitat_sim(tmp_path, monkeypatch, state_style):
    path = tmp_path / "00000.pkl"
    path.write_bytes(_pickle_like_openeqa(monkeypatch, state_style))
    for name in ("habitat_sim", "habitat_sim.agent", "habitat_sim.agent.agent", "quaternion"):
        monkeypatch.delitem(sys.modules, name)  # reading needs none of them
    state = load_agent_state(path)
    assert state.scene_id.endswith("ab.basis.glb") and state.resolution == (1080, 1920)
    np.testing.assert_allclose(state.agent_state.position, [1.0, 0.1, 2.0], atol=1e-6)
    np.testing.assert_allclose(state.agent_state.rotation, [0.7071, 0, 0.7071, 0])
    assert state.sensor_height() == pytest.approx(1.4)
    k = state.intrinsics()
    assert k[0, 0] == pytest.approx(960.0) and (k[0, 2], k[1, 2]) == (960, 540)
    assert list_state_files(tmp_path) == [path]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_calls_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "00000.pkl"
    path.write_bytes(pickle.dumps({"scene_id": "x", "agent_state": _Exploit(marker)}))
    with pytest.raises(UnsafePickleError, match=r"00000.pkl: refusing to load (posix|os)\.system"):
        load_agent_state(path)
    assert not marker.exists()


def test_malformed_state_files_are_named(tmp_path):
    (tmp_path / "a.pkl").write_bytes(b"not a pickle")
    with pytest.raises(StateFileError, match=r"a.pkl: not a readable pickle"):
        load_agent_state(tmp_path / "a.pkl")
    (tmp_path / "b.pkl").write_bytes(pickle.dumps({"scene_id": "s"}))
    with pytest.raises(StateFileError, match=r"b.pkl: missing key\(s\) agent_state"):
        load_agent_state(tmp_path / "b.pkl")
    with pytest.raises(StateFileError, match=r"nowhere: not a folder"):
        list_state_files(tmp_path / "nowhere")
