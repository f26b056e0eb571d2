"""Lazy public names for our package ``__init__`` modules (PEP 562).

A package lists its public names in ``__all__`` and imports them under ``if TYPE_CHECKING:``,
which type checkers and IDEs read; at run time nothing is imported until a name is first used,
so ``import habitat_eqarm`` never pulls in torch, transformers or habitat. The imports under
``TYPE_CHECKING`` are the one place that says where each name comes from: :func:`lazy_exports`
reads them from the package's source.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from typing import Any


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def type_checking_imports(package: str) -> dict[str, tuple[str, str]]:
    """Each name bound by ``from M import name [as alias]`` under ``if TYPE_CHECKING:`` in
    ``package``'s ``__init__``, mapped to ``(absolute M, name)``."""
    source = sys.modules[package].__spec__.loader.get_source(package)
    if source is None:
        raise ImportError(f"{package}: its source is needed to find its lazily exported names")
    found: dict[str, tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom):
                relative = "." * stmt.level + (stmt.module or "")
                module = importlib.util.resolve_name(relative, package)
                found.update({a.asname or a.name: (module, a.name) for a in stmt.names})
    return found


def lazy_exports(
    package: str, names: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, which exports ``names`` (its ``__all__``).

    Names the package defines itself (``__version__``) are left alone; every other one must be
    imported under ``if TYPE_CHECKING:``, else this raises ImportError naming it. A name is
    imported on first access and then kept in the package's namespace.
    """
    namespace = vars(sys.modules[package])
    sources = type_checking_imports(package)
    lazy = [name for name in names if name not in namespace]
    if missing := sorted(set(lazy) - set(sources)):
        raise ImportError(f"{package}.__all__ lists {missing}, not imported under TYPE_CHECKING")

    def __getattr__(name: str) -> Any:
        if name not in lazy:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = sources[name]
        value = getattr(importlib.import_module(module), attribute)
        namespace[name] = value  # later lookups find it without calling __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
