"""Contract: the Gymnasium internals behind gymnasium_compat keep the shape we rely on."""

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import VectorEnv

from habitat_eqarm.rewards.gymnasium_compat import GymnasiumChanged, add_env_info, check_gymnasium


def test_the_installed_gymnasium_has_every_shape_we_rely_on():
    check_gymnasium()


def test_infos_merge_in_the_vector_layout():
    class Three(VectorEnv):
        num_envs = 3

    infos = add_env_info(
        Three(),
        {"x": np.array([1, 0, 0]), "_x": np.array([1, 0, 0], bool)},
        {"eqarm": {"reward": 2.0}},
        2,
    )
    assert np.array_equal(infos["x"], [1, 0, 0])  # what was there stays
    assert np.array_equal(infos["eqarm"]["reward"], [0.0, 0.0, 2.0])
    assert np.array_equal(infos["_eqarm"], [False, False, True])


def test_a_changed_add_info_is_named_with_the_version(monkeypatch):
    monkeypatch.setattr(VectorEnv, "_add_info", lambda self, infos, info: infos)
    with pytest.raises(GymnasiumChanged, match=rf"gymnasium {gymnasium.__version__}: .*takes"):
        check_gymnasium()
    monkeypatch.delattr(VectorEnv, "_add_info")
    with pytest.raises(GymnasiumChanged, match="no longer exists"):
        check_gymnasium()
