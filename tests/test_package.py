import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import habitat_eqarm


def test_subpackages_import_without_habitat():
    for name in ["data", "envs", "rewards", "bench", "training", "testing", "cli"]:
        importlib.import_module(f"habitat_eqarm.{name}")
    assert "habitat" not in sys.modules and "habitat_sim" not in sys.modules


def test_ships_type_information():
    assert (Path(habitat_eqarm.__file__).parent / "py.typed").is_file()


def test_console_script_is_installed():
    exe = shutil.which("eqarm") or str(Path(sys.executable).parent / "eqarm")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: eqarm")
