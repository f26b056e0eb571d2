"""Registration with habitat-lab's registry and config composition through its Hydra code."""

from __future__ import annotations

import pytest


def test_every_component_is_registered(plugin):
    from habitat.core.registry import registry

    assert registry.get_dataset("OpenEQA-v0") is plugin.OpenEQADataset
    assert registry.get_task("EQARM-v0") is plugin.EQARMTask
    assert registry.get_simulator("EQARMReplaySim-v0") is plugin.EQARMReplaySim
    assert registry.get_task_action("EQARMAnswerAction") is plugin.EQARMAnswerAction
    assert registry.get_sensor("QuestionTextSensor") is plugin.QuestionTextSensor
    assert registry.get_measure("EQARMRewardMeasure") is plugin.EQARMRewardMeasure


def test_benchmark_config_composes_our_and_habitats_nodes(plugin, demo_overrides):
    cfg = plugin.get_config("benchmark/eqarm/openeqa_replay.yaml", demo_overrides).habitat
    assert cfg.simulator.type == "EQARMReplaySim-v0" and cfg.simulator.frames_per_step == 1
    assert cfg.task.type == "EQARM-v0" and cfg.task.end_on_memory_end is True
    assert list(cfg.task.actions) == ["move_forward", "turn_left", "turn_right", "eqarm_answer"]
    assert cfg.task.actions.move_forward.type == "MoveForwardAction"  # habitat-lab's own node
    measure = cfg.task.measurements.eqarm_reward
    assert measure.type == "EQARMRewardMeasure" and measure.k == 2 and measure.aggregate == "mean"
    assert cfg.task.lab_sensors.question_text_sensor.type == "QuestionTextSensor"
    assert cfg.dataset.type == "OpenEQA-v0" and cfg.dataset.data_path.endswith("demo-data.json")
    rgb = cfg.simulator.agents.main_agent.sim_sensors.rgb_sensor
    assert (rgb.type, rgb.width, rgb.height) == ("HabitatSimRGBSensor", 320, 180)
    assert cfg.simulator.agents_order == ["main_agent"]


def test_rgbd_config_and_structured_types(plugin):
    import habitat

    cfg = habitat.get_config(plugin.config_path("benchmark/eqarm/openeqa_replay_rgbd.yaml"))
    sensors = cfg.habitat.simulator.agents.main_agent.sim_sensors
    assert set(sensors) == {"rgb_sensor", "depth_sensor"} and sensors.depth_sensor.width == 320
    with pytest.raises(Exception, match=r"eqarm_reward\.k"):  # the dataclass types are enforced
        plugin.get_config(overrides=["habitat.task.measurements.eqarm_reward.k=many"])


def test_our_yaml_is_found_from_a_users_config_through_the_search_path(plugin, tmp_path):
    import habitat

    user = tmp_path / "my_eqa.yaml"
    user.write_text(
        "# @package _global_\n"
        "defaults:\n  - /benchmark/eqarm/openeqa_replay\n  - _self_\n"
        "habitat:\n  environment:\n    max_episode_steps: 7\n"
    )
    cfg = habitat.get_config(str(user)).habitat
    assert cfg.environment.max_episode_steps == 7 and cfg.task.type == "EQARM-v0"
    with pytest.raises(FileNotFoundError, match="shipped"):
        plugin.config_path("benchmark/eqarm/nope.yaml")


def test_missing_habitat_message_names_package_and_install():
    from habitat_eqarm.envs.habitat_deps import missing_habitat_error

    err = missing_habitat_error(ModuleNotFoundError("No module named 'magnum'", name="magnum"))
    assert "habitat-sim" in str(err) and "conda install habitat-sim" in str(err)
    err = missing_habitat_error(ModuleNotFoundError("No module named 'habitat'", name="habitat"))
    assert "habitat-lab" in str(err) and "habitat-eqarm[habitat]" in str(err)


def test_measure_config_fields_are_the_scoring_configs(plugin, demo_overrides):
    """The measure's scoring fields are generated from ScoringConfig: same names, defaults,
    and a config node carries them to the measure's reward setup."""
    import dataclasses

    from habitat_eqarm.envs.habitat_config import EQARMRewardMeasurementConfig
    from habitat_eqarm.envs.habitat_task import _setup_from_config
    from habitat_eqarm.rewards.config import ScoringConfig, SourceOptions, field_names

    own = {"type", "reward_model", "backend", "max_frames", "rgb_uuid"}
    names = {f.name for f in dataclasses.fields(EQARMRewardMeasurementConfig)} - own
    expected = set(field_names()) - set(field_names(SourceOptions)) - {"add_env_reward"}
    assert names == expected
    defaults = ScoringConfig()
    assert all(getattr(EQARMRewardMeasurementConfig(), n) == getattr(defaults, n) for n in names)
    overrides = [*demo_overrides, "habitat.task.measurements.eqarm_reward.reward_scale=3.0"]
    measure = plugin.get_config("benchmark/eqarm/openeqa_replay.yaml", overrides)
    setup = _setup_from_config(measure.habitat.task.measurements.eqarm_reward)
    assert setup.config.k == 2 and setup.shaping.scale == 3.0
    assert setup.sources["answer"] == "action.answer"
