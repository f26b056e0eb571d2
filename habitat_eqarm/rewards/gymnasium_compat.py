"""Gymnasium's private API that we rely on, in one place.

Each touch point is one name below; :func:`check_gymnasium` verifies that the installed
Gymnasium still has the shape we rely on (tests/rewards/test_gymnasium_compat.py) and raises
:class:`GymnasiumChanged`, naming the version, if not.
"""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import VectorEnv


class GymnasiumChanged(RuntimeError):
    """The installed Gymnasium no longer has a shape this module relies on."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"gymnasium {gymnasium.__version__}: {what}; habitat_eqarm/rewards/gymnasium_compat.py "
            "was written against gymnasium 1.x and needs updating for this release"
        )


def add_env_info(
    env: VectorEnv, infos: dict[str, Any], info: dict[str, Any], index: int
) -> dict[str, Any]:
    """``infos`` with sub-env ``index``'s ``info`` merged in, in Gymnasium's vector layout (a dict
    of arrays, each with a ``_key`` mask): ``VectorEnv._add_info`` builds it, with no public twin,
    so our keys merge exactly as a vector env's own."""
    return VectorEnv._add_info(env, infos, info, index)


def check_add_info() -> None:
    """``VectorEnv._add_info(vector_infos, env_info, env_num)`` exists and lays out a value of
    one sub-env as an array over ``num_envs`` with a ``_`` mask, recursing into dicts."""
    method = getattr(VectorEnv, "_add_info", None)
    if method is None:
        raise GymnasiumChanged("VectorEnv._add_info no longer exists")
    params = tuple(inspect.signature(method).parameters)
    if params != ("self", "vector_infos", "env_info", "env_num"):
        raise GymnasiumChanged(f"VectorEnv._add_info takes {params}")

    class Two(VectorEnv):
        num_envs = 2

    infos = add_env_info(Two(), {}, {"eqarm": {"reward": 0.5}}, 1)
    inner = infos.get("eqarm", {})
    if not (
        np.array_equal(inner.get("reward"), [0.0, 0.5])
        and np.array_equal(inner.get("_reward"), [False, True])
        and np.array_equal(infos.get("_eqarm"), [False, True])
    ):
        raise GymnasiumChanged(f"VectorEnv._add_info lays out infos as {infos}")


def check_gymnasium() -> None:
    """Every Gymnasium shape this module relies on; raises :class:`GymnasiumChanged` if moved."""
    check_add_info()
