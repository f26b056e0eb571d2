"""Gymnasium environments and the episode-memory recorder; the Habitat plugin lives in
``envs/habitat*`` (the only modules that import habitat, lazily).

Importing this package registers ``habitat_eqarm/EMEQA-v0`` with Gymnasium.
"""

import gymnasium as gym

from habitat_eqarm.envs.emeqa import ANSWER, CONTINUE, EMEQAEnv
from habitat_eqarm.envs.recorder import EpisodeMemoryRecorder

if "habitat_eqarm/EMEQA-v0" not in gym.registry:
    gym.register(id="habitat_eqarm/EMEQA-v0", entry_point="habitat_eqarm.envs.emeqa:EMEQAEnv")

__all__ = ["ANSWER", "CONTINUE", "EMEQAEnv", "EpisodeMemoryRecorder"]
