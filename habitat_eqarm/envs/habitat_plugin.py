"""The Habitat plugin: importing this module registers everything with habitat-lab.

* dataset ``OpenEQA-v0``, task ``EQARM-v0``, action ``EQARMAnswerAction`` (text answer and
  reasoning), lab sensor ``QuestionTextSensor``, measure ``EQARMRewardMeasure``
  (uuid ``eqarm_reward``): :mod:`habitat_eqarm.envs.habitat_task`;
* simulator ``EQARMReplaySim-v0``: :mod:`habitat_eqarm.envs.habitat_replay`;
* one structured config per component in Hydra's ``ConfigStore`` and our YAML on Hydra's search
  path: :mod:`habitat_eqarm.envs.habitat_config`.

Without habitat-lab (or habitat-sim, which ``import habitat`` needs) the import raises an
``ImportError`` that says what to install; ``import habitat_eqarm`` never imports this module.

>>> import habitat, habitat_eqarm.envs.habitat_plugin as plugin
>>> overrides = ["habitat.dataset.data_path=...", "habitat.dataset.episodes_root=..."]
>>> config = plugin.get_config("benchmark/eqarm/openeqa_replay.yaml", overrides)
>>> env = habitat.Env(config)
"""

from __future__ import annotations

from collections.abc import Sequence

from habitat_eqarm.envs.habitat_config import (
    CONFIG_DIR,
    DEFAULT_BENCHMARK,
    EQARMConfigPlugin,
    config_path,
    store_configs,
)
from habitat_eqarm.envs.habitat_deps import missing_habitat_error
from habitat_eqarm.envs.habitat_replay import EQARMReplaySim
from habitat_eqarm.envs.habitat_task import (
    EQARMAnswerAction,
    EQARMEpisode,
    EQARMRewardMeasure,
    EQARMTask,
    OpenEQADataset,
    QuestionTextSensor,
)

try:
    import habitat
except ImportError as err:  # pragma: no cover - the modules above import habitat first
    raise missing_habitat_error(err) from err

store_configs()


def get_config(name: str = DEFAULT_BENCHMARK, overrides: Sequence[str] | None = None):
    """``habitat.get_config`` for one of our YAML files (relative to the package's config tree)
    or any YAML path; our groups and habitat-lab's are both on the search path."""
    return habitat.get_config(name, list(overrides or []), configs_dir=str(CONFIG_DIR))


__all__ = [
    "CONFIG_DIR",
    "DEFAULT_BENCHMARK",
    "EQARMAnswerAction",
    "EQARMConfigPlugin",
    "EQARMEpisode",
    "EQARMReplaySim",
    "EQARMRewardMeasure",
    "EQARMTask",
    "OpenEQADataset",
    "QuestionTextSensor",
    "config_path",
    "get_config",
]
