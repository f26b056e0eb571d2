from pathlib import Path

import pytest

from habitat_eqarm.bench.builder.common import backend_kwargs, public_kwargs
from habitat_eqarm.cli import bench_generate, bench_judge, bench_split
from habitat_eqarm.cli.main import COMMANDS

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "bench"


@pytest.mark.parametrize(
    ("module", "name"),
    [(bench_generate, "generate"), (bench_judge, "judge"), (bench_split, "split")],
)
def test_example_configs_parse(module, name):
    (cfg,) = module.make_parser().parse_args_and_config(["--config", str(CONFIGS / f"{name}.yaml")])
    if name != "split":
        assert cfg.backend == "hf" and isinstance(backend_kwargs(cfg.backend_kwargs), dict)


def test_every_stage_is_a_command():
    stages = ("generate", "judge", "review", "split", "export")
    assert all(f"bench {stage}" in COMMANDS for stage in stages)


def test_backend_kwargs_from_yaml_or_flag_and_secrets_never_recorded():
    assert backend_kwargs({"a": 1}) == backend_kwargs('{"a": 1}') == {"a": 1}
    assert backend_kwargs(None) == {}
    with pytest.raises(ValueError, match="must be a JSON object"):
        backend_kwargs("[1]")
    given = {"base_url": "http://x", "api_key": "sk-1", "auth_token": "t", "timeout": 5}
    assert public_kwargs(given) == {"base_url": "http://x", "timeout": 5}
