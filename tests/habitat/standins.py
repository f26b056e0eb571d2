"""TEST STAND-INS for habitat-sim's compiled modules ``magnum``, ``corrade`` and ``habitat_sim``.

habitat-sim has no wheel for this Python, yet ``import habitat`` (habitat-lab 0.3.x) imports
those modules at import time. :func:`install` puts a meta-path finder in front of ``sys.meta_path``
that answers every ``magnum*``, ``corrade*`` and ``habitat_sim*`` import with an inert module:

* any attribute of such a module is a *placeholder class* named after it (so habitat-lab can
  subclass it, use it in annotations and read enum-like members such as
  ``habitat_sim.SensorType.COLOR``);
* calling a placeholder (what habitat-lab does at import time, e.g. ``mn.Vector3.zero_init()``
  for default arguments) returns an inert token whose every attribute raises
  :class:`StandInUsed`: nothing computes, so nothing can silently pretend to simulate;
* every call is logged in :data:`CALLS`, so a test can prove that the code under test (our replay
  simulator, our task) never calls into habitat-sim at all.

Nothing here ships in the package; production code never imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

ROOTS = ("magnum", "corrade", "habitat_sim")
#: ``qualified name`` of every placeholder call, in order.
CALLS: list[str] = []


class StandInUsed(RuntimeError):
    """Raised when code uses a stand-in value as if habitat-sim were installed."""


class _Inert:
    """What calling a placeholder returns: usable as a default value, useless otherwise."""

    def __init__(self, origin: str) -> None:
        object.__setattr__(self, "_origin", origin)

    def __getattr__(self, name: str):
        raise StandInUsed(
            f"{self._origin}.{name}: a test stand-in; real habitat-sim is not installed"
        )

    def __repr__(self) -> str:
        return f"<stand-in value from {self._origin}>"


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        child = _placeholder(f"{cls.__qualname__}.{name}")
        setattr(cls, name, child)
        return child

    def __call__(cls, *args, **kwargs):
        CALLS.append(cls.__qualname__)
        return _Inert(cls.__qualname__)


def _placeholder(qualname: str) -> type:
    return _PlaceholderMeta(qualname.rsplit(".", 1)[-1], (), {"__qualname__": qualname})


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _placeholder(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name, "test stand-in (see tests/habitat/standins.py)")
        module.__path__ = []
        module.__is_test_stand_in__ = True
        return module

    def exec_module(self, module) -> None:
        """Nothing to run: attributes are made on first access."""


_FINDER = _Finder()


def install() -> None:
    """Answer imports of habitat-sim's modules with stand-ins (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def real_habitat_sim_installed() -> bool:
    """Whether a real habitat-sim is importable (checked before installing the stand-ins)."""
    import importlib.util

    return _FINDER not in sys.meta_path and importlib.util.find_spec("habitat_sim") is not None
