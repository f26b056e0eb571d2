"""habitat-eqarm: EQA-RM, a generative multimodal reward model for Embodied Question Answering.

The names users need most are here; each subpackage exports its own (``habitat_eqarm.data``,
``.envs``, ``.rewards``, ``.rewards.backends``, ``.agents``, ``.serve``, ``.testing``). Names
are imported on first use, so ``import habitat_eqarm`` stays light (no torch, transformers or
habitat). It does register ``habitat_eqarm/EMEQA-v0`` with Gymnasium, which is what makes
``gym.make("habitat_eqarm:habitat_eqarm/EMEQA-v0")`` work without a prior import.
"""

from typing import TYPE_CHECKING

from habitat_eqarm import envs  # registers habitat_eqarm/EMEQA-v0 (no env code is imported)
from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.agents.vlm import VLMAgent
    from habitat_eqarm.data.episode import EpisodeMemory
    from habitat_eqarm.data.openeqa import load_openeqa
    from habitat_eqarm.data.recorder import EpisodeMemoryRecorder
    from habitat_eqarm.data.schema import EQAInstance
    from habitat_eqarm.envs.emeqa import EMEQAEnv
    from habitat_eqarm.rewards.model import EQARewardModel, Judgement
    from habitat_eqarm.rewards.parsing import parse_evaluation
    from habitat_eqarm.rewards.vector import EQARMVectorReward
    from habitat_eqarm.rewards.wrapper import EQARMReward

__version__ = "0.1.0"

__all__ = [
    "EMEQAEnv",
    "EQAInstance",
    "EQARMReward",
    "EQARMVectorReward",
    "EQARewardModel",
    "EpisodeMemory",
    "EpisodeMemoryRecorder",
    "Judgement",
    "VLMAgent",
    "__version__",
    "envs",
    "load_openeqa",
    "parse_evaluation",
]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
