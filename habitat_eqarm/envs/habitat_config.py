"""Structured configs of the Habitat plugin, stored with Hydra's ``ConfigStore``, and the
``SearchPathPlugin`` that lets Hydra find our YAML (``benchmark/eqarm/*``, ``habitat/task/eqarm``,
``habitat/dataset/eqarm/*``) beside habitat-lab's own.

One dataclass per component, as habitat-lab does it; nested defaults use ``default_factory``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

from habitat_eqarm.envs.habitat_deps import missing_habitat_error
from habitat_eqarm.rewards.config import (
    KeyframeOptions,
    SamplingOptions,
    ShapingOptions,
    VoteOptions,
    generated_fields,
)

try:
    from habitat.config.default_structured_configs import (
        ActionConfig,
        DatasetConfig,
        LabSensorConfig,
        MeasurementConfig,
        SimulatorConfig,
        TaskConfig,
        register_hydra_plugin,
    )
    from hydra.core.config_search_path import ConfigSearchPath
    from hydra.core.config_store import ConfigStore
    from hydra.plugins.search_path_plugin import SearchPathPlugin
except ImportError as err:
    raise missing_habitat_error(err) from err

#: Root of the YAML shipped in the package; it mirrors habitat-lab's config tree.
CONFIG_DIR = Path(__file__).resolve().parent / "habitat_configs"
#: The benchmark config the gymnasium adapter uses when given none.
DEFAULT_BENCHMARK = "benchmark/eqarm/openeqa_replay.yaml"


@dataclass
class EQARMAnswerActionConfig(ActionConfig):
    """The text answer action: ``answer`` and ``reasoning`` (one step per line); ends the task."""

    type: str = "EQARMAnswerAction"
    max_answer_length: int = 1024
    max_reasoning_length: int = 8192


@dataclass
class QuestionTextSensorConfig(LabSensorConfig):
    """The question as text, observation key ``question``."""

    type: str = "QuestionTextSensor"
    max_length: int = 1024


#: Scoring settings of the measure: all of ``ScoringConfig`` but the sources (the measure reads
#: the question sensor and the answer action) and ``add_env_reward`` (a measure has no env
#: reward of its own to add).
MEASURE_SCORING = (VoteOptions, SamplingOptions, KeyframeOptions, ShapingOptions)
MEASURE_EXCLUDED = ("add_env_reward",)

EQARMRewardMeasurementConfig = make_dataclass(
    "EQARMRewardMeasurementConfig",
    [
        ("type", str, field(default="EQARMRewardMeasure")),
        ("reward_model", str, field(default="Qwen/Qwen2-VL-2B-Instruct")),
        ("backend", str, field(default="hf")),
        *generated_fields(*MEASURE_SCORING, exclude=MEASURE_EXCLUDED),
        ("max_frames", int, field(default=256)),
        ("rgb_uuid", str, field(default="rgb")),
    ],
    bases=(MeasurementConfig,),
    namespace={
        "__module__": __name__,
        "__doc__": """EQA-RM's reward for the answered episode (0 until then), through
        ``RewardSetup``.

        The scoring fields are generated from
        :class:`~habitat_eqarm.rewards.config.ScoringConfig` (:data:`MEASURE_SCORING`), so a
        setting added there is a field here; ``reward_model`` is a local path or hub id, loaded
        on the first answer; ``seed``: episode n of the env samples with ``seed + n``.
        """,
    },
)


@dataclass
class EQARMTaskConfig(TaskConfig):
    """``EQARM-v0``: ends when the answer action is taken (or the replayed memory runs out)."""

    type: str = "EQARM-v0"
    end_on_memory_end: bool = True


@dataclass
class EQARMReplaySimConfig(SimulatorConfig):
    """``EQARMReplaySim-v0``: replays each episode's recorded memory as its rgb/depth sensors.

    ``frames_per_step``: recorded frames each navigation action advances (the recording cannot
    be steered: every navigation action moves on along it). ``depth_units_per_metre``: how the
    memory stores depth; None takes OpenEQA's convention for the episode's source.
    """

    type: str = "EQARMReplaySim-v0"
    frames_per_step: int = 1
    depth_units_per_metre: float | None = None


@dataclass
class OpenEQADatasetConfig(DatasetConfig):
    """``OpenEQA-v0``: OpenEQA questions (``data_path``, e.g. open-eqa-v0.json) with their
    episode histories under ``episodes_root``; ``question_ids`` keeps a subset;
    ``on_missing="skip"`` drops questions whose episode is not found (``"error"`` raises)."""

    type: str = "OpenEQA-v0"
    split: str = "val"
    data_path: str = "data/open-eqa-v0.json"
    episodes_root: str = "data/frames"
    question_ids: list[str] = field(default_factory=list)
    on_missing: str = "skip"


class EQARMConfigPlugin(SearchPathPlugin):
    """Adds the package's YAML tree to Hydra's search path (after habitat-lab's)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(
            provider="habitat_eqarm", path="pkg://habitat_eqarm/envs/habitat_configs"
        )


def store_configs() -> None:
    """Store every config node with ``ConfigStore`` and register the search-path plugin."""
    cs = ConfigStore.instance()
    for group, name, node in (
        ("habitat/task/actions", "eqarm_answer", EQARMAnswerActionConfig),
        ("habitat/task/lab_sensors", "question_text_sensor", QuestionTextSensorConfig),
        ("habitat/task/measurements", "eqarm_reward", EQARMRewardMeasurementConfig),
    ):
        cs.store(package=f"{group.replace('/', '.')}.{name}", group=group, name=name, node=node)
    cs.store(
        package="habitat.task", group="habitat/task", name="eqarm_task_base", node=EQARMTaskConfig
    )
    cs.store(
        package="habitat.simulator",
        group="habitat/simulator",
        name="eqarm_replay_sim",
        node=EQARMReplaySimConfig,
    )
    cs.store(
        package="habitat.dataset",
        group="habitat/dataset",
        name="openeqa_config_schema",
        node=OpenEQADatasetConfig,
    )
    register_hydra_plugin(EQARMConfigPlugin)


def config_path(name: str) -> str:
    """The absolute path of a shipped YAML, e.g. ``benchmark/eqarm/openeqa_replay.yaml``."""
    path = CONFIG_DIR / name
    if not path.is_file():
        shipped = sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml"))
        raise FileNotFoundError(f"no shipped habitat config {name!r}; shipped: {shipped}")
    return str(path)
