"""The package's layering: each subpackage imports only the layers below it (docs/DESIGN.md, Layout).

Every module is imported (so a module that cannot load fails here, not in a user's sweep), and every
``import`` statement in it is read from its source, function-level imports included, since most of
ktsweep imports lazily. Imports under ``if TYPE_CHECKING:`` are for annotations only and never run.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ktsweep

# Lowest first. A module may import its own layer and any layer before it in this list.
LAYERS = ("core", "conf", "hypermodels", "data", "execution", "tracking", "dashboards", "registry",
          "search", "cli")
TOP = len(LAYERS)  # ktsweep/__init__.py, __main__.py and api.py: the front ends, above everything
PACKAGE_ROOT = Path(ktsweep.__file__).parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(ktsweep.__path__, "ktsweep."))


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in ("__init__", "__main__", "api"):
        return TOP
    return LAYERS.index(parts[1])


def _source(module: str) -> Path:
    path = PACKAGE_ROOT.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(module: str) -> list[tuple[int, str]]:
    """(line, module) for each ktsweep import that runs, relative imports resolved."""
    path = _source(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                # `from ktsweep.x import y` may name a submodule y: judge by the deepest module
                for alias in child.names:
                    candidate = f"{name}.{alias.name}"
                    found.append((child.lineno, candidate if candidate in ALL else name))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return [(line, name) for line, name in found if name == "ktsweep" or name.startswith("ktsweep.")]


ALL = set(_modules())


def test_every_module_imports():
    for module in sorted(ALL):
        importlib.import_module(module)


def test_the_tree_has_only_the_known_layers():
    subpackages = {p.name for p in PACKAGE_ROOT.iterdir() if (p / "__init__.py").exists()}
    assert subpackages == set(LAYERS), "a new subpackage needs its place in LAYERS and in docs/DESIGN.md"


def test_no_module_imports_a_layer_above_its_own():
    upward: list[str] = []
    for module in sorted(ALL):
        own = _layer(module)
        for line, name in sorted(set(_imported(module))):
            if name != "ktsweep" and _layer(name) > own:
                upward.append(f"{_source(module).relative_to(PACKAGE_ROOT.parent)}:{line} "
                              f"({LAYERS[own] if own < TOP else 'top'}) imports {name}")
    assert not upward, "imports above their layer:\n" + "\n".join(upward)


def test_the_checker_sees_a_function_level_upward_import(tmp_path, monkeypatch):
    """The check reads lazy imports too: a core module importing search inside a function is caught."""
    fake = PACKAGE_ROOT / "core" / "_layering_probe.py"
    fake.write_text("def f():\n    from ktsweep.search.flow import run_sweep\n")
    try:
        assert (2, "ktsweep.search.flow") in _imported("ktsweep.core._layering_probe")
        assert _layer("ktsweep.search.flow") > _layer("ktsweep.core._layering_probe")
    finally:
        fake.unlink()


@pytest.mark.parametrize("package", [p for p in LAYERS if p != "hypermodels"])
def test_subpackage_inits_import_nothing(package):
    """Keeps `ktsweep --help` and `ktsweep list` fast: a subpackage's __init__ pulls in no module.
    (``ktsweep.hypermodels`` re-exports its classes: configs name them as ``ktsweep.hypermodels.MLPClassifier``.)"""
    init = PACKAGE_ROOT / package / "__init__.py"
    tree = ast.parse(init.read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_fast_commands_import_no_heavy_library():
    probe = ("import sys; from ktsweep.cli.main import build_parser; import ktsweep; build_parser(); "
             "heavy = [m for m in ('tensorflow', 'keras', 'ray', 'mlflow', 'keras_tuner') if m in sys.modules]; "
             "print(heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
