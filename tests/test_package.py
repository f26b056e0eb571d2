import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import habitat_eqarm

HEAVY = ("torch", "transformers", "habitat", "habitat_sim")
PACKAGES = [
    "habitat_eqarm",
    "habitat_eqarm.agents",
    "habitat_eqarm.data",
    "habitat_eqarm.envs",
    "habitat_eqarm.rewards",
    "habitat_eqarm.rewards.backends",
    "habitat_eqarm.serve",
    "habitat_eqarm.testing",
]


def run_python(code: str) -> str:
    """``code`` in a fresh interpreter (nothing of ours imported yet); its stdout."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout


def test_subpackages_import_without_habitat():
    for name in ["data", "envs", "rewards", "bench", "training", "testing", "cli"]:
        importlib.import_module(f"habitat_eqarm.{name}")
    assert "habitat" not in sys.modules and "habitat_sim" not in sys.modules


def test_importing_the_package_and_its_main_names_stays_light():
    code = (
        "import sys, json\n"
        "import habitat_eqarm, habitat_eqarm.data, habitat_eqarm.envs, habitat_eqarm.rewards\n"
        "import habitat_eqarm.rewards.backends\n"
        "from habitat_eqarm import EQARMReward, EQARewardModel, EQAInstance, EpisodeMemory\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert json.loads(run_python(code)) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves_and_is_listed(package):
    module = importlib.import_module(package)
    listed = dir(module)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
        assert name in listed, name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_the_documented_imports():
    from habitat_eqarm import EpisodeMemory, EQAInstance, EQARewardModel
    from habitat_eqarm.data.episode import EpisodeMemory as memory_class
    from habitat_eqarm.data.schema import EQAInstance as instance_class
    from habitat_eqarm.rewards import EQARMReward
    from habitat_eqarm.rewards.model import EQARewardModel as model_class
    from habitat_eqarm.rewards.wrapper import EQARMReward as wrapper_class

    assert EQARMReward is wrapper_class and habitat_eqarm.EQARMReward is wrapper_class
    assert (EQARewardModel, EQAInstance, EpisodeMemory) == (
        model_class,
        instance_class,
        memory_class,
    )


def test_gym_make_with_the_module_prefix_needs_no_import():
    code = (
        "import gymnasium as gym\n"
        "env = gym.make('habitat_eqarm:habitat_eqarm/EMEQA-v0', questions='synthetic')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(type(env.unwrapped).__name__, obs['frame'].ndim)"
    )
    assert run_python(code).split() == ["EMEQAEnv", "3"]


def test_ships_type_information():
    assert (Path(habitat_eqarm.__file__).parent / "py.typed").is_file()


def test_console_script_is_installed():
    exe = shutil.which("eqarm") or str(Path(sys.executable).parent / "eqarm")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: eqarm")


def locked_pins(path: Path) -> set[tuple[str, str]]:
    """(name, version) of every ``name==version`` line of a uv-compiled requirements lock."""
    pins = set()
    for line in path.read_text().splitlines():
        spec = line.split(";")[0].strip()
        if spec and not spec.startswith("#") and "==" in spec:
            name, version = spec.split("==")
            pins.add((name.strip().lower(), version.strip()))
    return pins


def test_pylock_pins_what_the_requirements_lock_pins():
    """pylock.toml (PEP 751, for uv and pip's ``-r pylock.toml``) is `make lock`'s export of
    requirements.txt, the lock `make test` installs from: the same packages at the same
    versions."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    pylock = tomllib.loads((root / "pylock.toml").read_text())
    exported = {(p["name"].lower(), p["version"]) for p in pylock["packages"]}
    pins = locked_pins(root / "requirements.txt")
    assert len(pins) > 100
    assert exported == pins, (
        f"pylock.toml and requirements.txt differ (run `make lock`): only in pylock.toml "
        f"{sorted(exported - pins)}, only in requirements.txt {sorted(pins - exported)}"
    )
