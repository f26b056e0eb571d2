"""Lazy exports on a real package written to disk: imported on first use, drift refused."""

import sys

import pytest

INIT = """
from typing import TYPE_CHECKING

from habitat_eqarm._lazy import lazy_exports

if TYPE_CHECKING:
    from .heavy import VALUE
    from {pkg}.heavy import helper as renamed

OWN = 1
__all__ = {names!r}
__getattr__, __dir__ = lazy_exports(__name__, __all__)
"""


@pytest.fixture
def make_package(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(pkg, names):
        folder = tmp_path / pkg
        folder.mkdir()
        (folder / "__init__.py").write_text(INIT.format(pkg=pkg, names=names))
        (folder / "heavy.py").write_text("VALUE = 42\ndef helper():\n    return 'h'\n")
        return pkg

    yield make
    for name in [m for m in sys.modules if m.startswith("lazy_demo")]:
        del sys.modules[name]


def test_names_are_imported_on_first_use(make_package):
    pkg = make_package("lazy_demo_ok", ["OWN", "VALUE", "renamed"])
    module = __import__(pkg)
    assert f"{pkg}.heavy" not in sys.modules
    assert {"OWN", "VALUE", "renamed"} <= set(dir(module))
    assert module.VALUE == 42 and module.renamed() == "h" and module.OWN == 1
    assert f"{pkg}.heavy" in sys.modules


def test_a_name_without_its_import_is_refused(make_package):
    pkg = make_package("lazy_demo_bad", ["VALUE", "missing"])
    with pytest.raises(ImportError, match=r"lazy_demo_bad.__all__ lists \['missing'\]"):
        __import__(pkg)
