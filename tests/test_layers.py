"""The packages form layers that import only downwards, with no cycle, read from the source.

Every ``import`` and ``from ... import`` of every module is parsed with :mod:`ast`, the ones
inside functions (lazy imports) included, so an import that runs only on some code path is
held to the same rule. docs/architecture.md draws the resulting graph.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

import habitat_eqarm

PACKAGE_ROOT = Path(habitat_eqarm.__file__).parent

#: Rank of each top-level package: a module may import its own package or a lower rank only.
#: ``_lazy`` is the PEP 562 helper every ``__init__`` uses; ``__version__`` is the one constant
#: the root ``__init__`` defines; any other name taken from the root (``""``) is one of its
#: re-exports, which sit above everything.
LAYERS = {
    "_lazy": 0,
    "__version__": 0,
    "data": 1,
    "rewards": 2,
    "envs": 3,
    "bench": 3,
    "training": 3,
    "serve": 4,
    "integrations": 4,
    "agents": 4,
    "testing": 5,
    "cli": 6,
    "": 7,
}

#: The product path never imports the tests' helper package ``testing``, except here: the tiny
#: untrained model a command builds when it is given no ``--model`` (a lazy import).
TESTING_IMPORTS_ALLOWED = {("habitat_eqarm.cli.common", "habitat_eqarm.testing")}
TESTING_IMPORTS_ALLOWED |= {("habitat_eqarm.cli.common", "habitat_eqarm.testing.tiny_model")}


@dataclass(frozen=True)
class Import:
    """One import statement of ours: the importing module, the imported one, where, how."""

    module: str
    target: str
    line: int
    lazy: bool  # inside a function body

    def __str__(self) -> str:
        where = "lazily, " if self.lazy else ""
        return f"{self.module} imports {self.target} ({where}line {self.line})"


def module_name(path: Path, root: Path, package: str) -> str:
    """``root/rewards/model.py`` -> ``"<package>.rewards.model"``; a package's ``__init__``
    is the package itself."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if not node.level:
        return [node.module or ""]
    anchor = module if is_package else module.rpartition(".")[0]
    return [importlib.util.resolve_name("." * node.level + (node.module or ""), anchor)]


def _lazy_lines(tree: ast.Module) -> set[int]:
    """Line numbers of import statements inside a function (run only when it is called)."""
    lines: set[int] = set()
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            imports = (n for n in ast.walk(func) if isinstance(n, ast.Import | ast.ImportFrom))
            lines |= {n.lineno for n in imports}
    return lines


def module_imports(path: Path, root: Path, package: str) -> list[Import]:
    """Every import of ``package``'s own modules in one source file, lazy ones included."""
    module = module_name(path, root, package)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lazy = _lazy_lines(tree)
    found = []
    for node in ast.walk(tree):
        for target in _imported(node, module, path.name == "__init__.py"):
            if target == package and isinstance(node, ast.ImportFrom):
                # names taken from the root: what matters is which one
                targets = [f"{package}.{alias.name}" for alias in node.names]
            elif target == package or target.startswith(package + "."):
                targets = [target]
            else:
                continue
            found += [Import(module, t, node.lineno, node.lineno in lazy) for t in targets]
    return sorted(found, key=lambda imp: (imp.module, imp.line, imp.target))


def all_imports(root: Path = PACKAGE_ROOT, package: str = "habitat_eqarm") -> list[Import]:
    """The imports of ours in every module under ``root``."""
    paths = sorted(root.rglob("*.py"))
    return [imp for path in paths for imp in module_imports(path, root, package)]


def top_package(module: str) -> str:
    """``habitat_eqarm.rewards.backends.hf`` -> ``"rewards"``; the root package -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def layer(top: str) -> int:
    """A top-level name's rank in :data:`LAYERS`; a name re-exported by the root is the root's."""
    return LAYERS.get(top, LAYERS[""])


def subpackage(module: str, root: Path = PACKAGE_ROOT) -> str:
    """The node a module is in the package graph: the (sub)package it belongs to, itself when it
    is a package's ``__init__`` or a top-level module (``_lazy``) or name (``__version__``)."""
    parts = module.split(".")[1:]
    if len(parts) <= 1 or (root.joinpath(*parts) / "__init__.py").is_file():
        return module
    return module.rpartition(".")[0]


def check_layers(imports: list[Import]) -> list[str]:
    """Each import that points up (or sideways into a sibling) the :data:`LAYERS` order."""
    bad = []
    for imp in imports:
        source, target = top_package(imp.module), top_package(imp.target)
        if source != target and layer(target) >= layer(source):
            bad.append(f"{imp}: {source or 'the root'} may not import {target}")
    return bad


def check_testing_imports(imports: list[Import]) -> list[str]:
    """Each product-path import of ``testing`` outside :data:`TESTING_IMPORTS_ALLOWED`."""
    return [
        f"{imp}: only the tests' helpers may import habitat_eqarm.testing"
        for imp in imports
        if top_package(imp.target) == "testing"
        and top_package(imp.module) != "testing"
        and (imp.module, imp.target) not in TESTING_IMPORTS_ALLOWED
    ]


def package_graph(imports: list[Import], root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """(Sub)package -> the other (sub)packages it imports."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        source, target = subpackage(imp.module, root), subpackage(imp.target, root)
        graph.setdefault(source, set())
        if source != target:
            graph[source].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in PACKAGE_ROOT.glob("*/__init__.py")}
    modules = {p.stem for p in PACKAGE_ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LAYERS), "add the new package to LAYERS (and the docs)"


def test_every_import_points_down_the_layers():
    assert check_layers(all_imports()) == []


def test_no_cycle_between_packages_or_subpackages():
    assert find_cycle(package_graph(all_imports())) is None


def test_the_product_path_imports_testing_only_for_the_default_model():
    imports = all_imports()
    assert check_testing_imports(imports) == []
    used = {(imp.module, imp.target) for imp in imports if top_package(imp.target) == "testing"}
    lazy = {(imp.module, imp.target) for imp in imports if imp.lazy}
    assert used & TESTING_IMPORTS_ALLOWED <= lazy, "the default model's import must stay lazy"


def test_only_the_habitat_modules_import_habitat():
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if path.parent.name == "envs" and path.name.startswith("habitat"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = module_name(path, PACKAGE_ROOT, "habitat_eqarm")
        for node in ast.walk(tree):
            for target in _imported(node, module, path.name == "__init__.py"):
                assert target.split(".")[0] not in ("habitat", "habitat_sim"), f"{module}: {target}"


@pytest.fixture()
def toy_tree(tmp_path):
    """A package ``toy`` whose ``data`` imports ``cli`` lazily and whose ``rewards`` and
    ``envs`` import each other: what the checks above must catch."""
    files = {
        "__init__.py": "",
        "data/__init__.py": "",
        "data/io.py": "def f():\n    from toy.cli.common import cache_dir\n",
        "rewards/__init__.py": "",
        "rewards/wrapper.py": "from toy.envs import recorder\n",
        "envs/__init__.py": "",
        "envs/recorder.py": "from ..rewards.wrapper import x\n",
        "cli/__init__.py": "",
        "cli/common.py": "import toy.testing.tiny_model\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return all_imports(tmp_path, "toy"), tmp_path


def test_the_checks_name_the_module_and_import_they_refuse(toy_tree):
    imports, root = toy_tree
    bad = check_layers(imports)
    assert "toy.data.io imports toy.cli.common (lazily, line 2): data may not import cli" in bad
    assert any(b.startswith("toy.rewards.wrapper imports toy.envs (line 1)") for b in bad)
    assert check_testing_imports(imports) == [
        "toy.cli.common imports toy.testing.tiny_model (line 1): "
        "only the tests' helpers may import habitat_eqarm.testing"
    ]
    assert find_cycle(package_graph(imports, root)) == ["toy.envs", "toy.rewards", "toy.envs"]
