"""EQA agents and their rollouts: the VLM agent, and env rollouts written as reward-model data.

:class:`VLMAgent` answers from its episode memory with a vision-language model through a
reward backend (the same code for the tiny local Qwen2-VL and a real checkpoint);
:func:`run_rollouts` plays any :class:`~habitat_eqarm.envs.agents.Policy` over an env and
writes :class:`~habitat_eqarm.data.schema.EQAInstance` JSONL for `eqarm bench judge` and
`eqarm train rft`. The names are imported on first use.
"""

from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from habitat_eqarm.agents.rollouts import RolloutsConfig, make_policy, run_rollouts
    from habitat_eqarm.agents.vlm import VLMAgent

__all__ = ["RolloutsConfig", "VLMAgent", "make_policy", "run_rollouts"]

__getattr__, __dir__ = lazy_exports(__name__, __all__)
