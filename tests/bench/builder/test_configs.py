import json
from pathlib import Path

import pytest

from habitat_eqarm.bench.builder.common import backend_kwargs, open_backend, public_kwargs
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


def test_the_openai_backend_from_the_builders_options(monkeypatch, tmp_path):
    """What `--backend openai --backend_kwargs JSON` (or a YAML mapping) builds; no request."""
    monkeypatch.setenv("EQARM_TEST_GATEWAY_KEY", "sk-test-builder-0123456789")
    options = {
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "EQARM_TEST_GATEWAY_KEY",
        "cache_dir": str(tmp_path / "cache"),
        "max_pixels": 50176,
        "max_retries": 2,
    }
    for given in (json.dumps(options), options):
        backend = open_backend("openai", "served-model", given)
        try:
            assert backend.name == "openai" and backend.model_id == "served-model"
            assert backend.endpoint == "http://127.0.0.1:9/v1/chat/completions"
            assert backend.encoding["max_pixels"] == 50176 and backend.max_retries == 2
            assert backend.cache.root == tmp_path / "cache"
            assert backend._client.headers["authorization"] == "Bearer sk-test-builder-0123456789"
            assert "sk-test" not in repr(backend)
        finally:
            backend.close()
    assert public_kwargs(options)["base_url"] == options["base_url"]
    assert "api_key_env" not in public_kwargs(options)  # only a variable's name, dropped anyway
    with pytest.raises(ValueError, match=r"\['base_ur'\] do not fit the 'openai' backend"):
        open_backend("openai", "served-model", {"base_ur": "http://127.0.0.1:9/v1"})
