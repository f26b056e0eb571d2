"""Gymnasium environments and scripted agents; the Habitat plugin lives in ``envs/habitat*``
(the only modules that import habitat, lazily). The recorder is in :mod:`habitat_eqarm.data`.

Importing this package registers ``habitat_eqarm/EMEQA-v0`` with Gymnasium; the env's module is
imported when the env is made. The names below are imported on first use.
"""

from typing import TYPE_CHECKING

import gymnasium as gym

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.envs.agents import PlayedEpisode, Policy, ScriptedAgent, play_episode
    from habitat_eqarm.envs.emeqa import ANSWER, CONTINUE, MODES, EMEQAEnv, load_episodes

#: The Gymnasium id of :class:`~habitat_eqarm.envs.emeqa.EMEQAEnv`.
EMEQA_ID = "habitat_eqarm/EMEQA-v0"

if EMEQA_ID not in gym.registry:
    gym.register(id=EMEQA_ID, entry_point="habitat_eqarm.envs.emeqa:EMEQAEnv")

__all__ = [
    "ANSWER",
    "CONTINUE",
    "EMEQA_ID",
    "MODES",
    "EMEQAEnv",
    "PlayedEpisode",
    "Policy",
    "ScriptedAgent",
    "load_episodes",
    "play_episode",
]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
