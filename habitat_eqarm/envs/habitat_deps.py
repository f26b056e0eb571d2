"""The one message every Habitat module gives when habitat-lab or habitat-sim is missing.

This module imports nothing from habitat, so ``import habitat_eqarm`` never fails because of it.
"""

from __future__ import annotations

INSTALL_HINT = (
    "install habitat-sim from conda (`conda install habitat-sim -c conda-forge -c aihabitat`; "
    "there is no pip wheel for current Pythons), then habitat-lab with "
    "`pip install 'habitat-eqarm[habitat]'` (habitat-lab 0.3.x, which pins numpy 1.26.4)"
)

#: Top-level modules that come with habitat-sim rather than habitat-lab.
HABITAT_SIM_MODULES = ("habitat_sim", "magnum", "corrade")


def missing_habitat_error(err: ImportError) -> ImportError:
    """An ImportError that says which package is missing and how to install it."""
    name = (getattr(err, "name", None) or "").split(".")[0]
    if name in HABITAT_SIM_MODULES:
        what = f"habitat-sim (its module {name!r} cannot be imported)"
    elif name == "habitat":
        what = "habitat-lab (module 'habitat')"
    else:
        what = f"habitat-lab or habitat-sim ({type(err).__name__}: {err})"
    return ImportError(f"habitat_eqarm's Habitat plugin needs {what}: {INSTALL_HINT}")
