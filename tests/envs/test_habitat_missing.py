"""Without habitat-lab, the package imports and the plugin says what is missing."""

from __future__ import annotations

import importlib
import importlib.util

import pytest


@pytest.mark.skipif(importlib.util.find_spec("habitat") is not None, reason="habitat is here")
def test_plugin_import_names_what_to_install():
    import habitat_eqarm
    import habitat_eqarm.envs

    assert habitat_eqarm.__version__ and habitat_eqarm.envs.EMEQAEnv
    for module in ("habitat_plugin", "habitat_gym", "habitat_replay", "habitat_task"):
        with pytest.raises(ImportError, match=r"needs habitat-lab .*conda install habitat-sim"):
            importlib.import_module(f"habitat_eqarm.envs.{module}")
