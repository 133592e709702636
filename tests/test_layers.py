"""The package's floors, enforced: no import (top-level or inside a function) may run up a floor.

Floors, bottom to top (ARCHITECTURE.md): systems, observables (and its alias module probes), theory, hyper, store,
engine, report, laws, diagnosis, integrations, then runner, sweep, cli and the package root. A module may import
its own package and any package on a lower floor.
"""
from __future__ import annotations

import ast
from pathlib import Path

import lmech

ROOT = Path(lmech.__file__).parent
FLOORS = ["_version", "systems", "observables", "probes", "theory", "hyper", "store", "engine", "report", "laws",
          "diagnosis", "integrations", "runner", "sweep", "cli", "__init__", "__main__"]


def _package(module: str) -> str:
    """``lmech.engine.trainer`` -> ``engine``; ``lmech`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every lmech module imported by ``path`` (absolute, resolved from relative imports), with its line."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "lmech"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lmech":
                continue
            if target == "lmech":  # `from . import engine` names subpackages
                out += [(node.lineno, f"lmech.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, target))
    return out


def _violations(files: list[Path]) -> list[str]:
    bad = []
    for path in files:
        own = _package(_module_name(path))
        for line, target in _imports(path):
            other = _package(target)
            if other != own and FLOORS.index(other) > FLOORS.index(own):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} ({own}) imports {target} ({other}, a higher floor)")
    return bad


def test_no_import_runs_up_a_floor():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 50
    assert _violations(files) == []


def test_every_package_has_a_floor():
    packages = {_package(_module_name(p)) for p in ROOT.rglob("*.py")}
    assert packages <= set(FLOORS), packages - set(FLOORS)


def test_a_back_edge_is_caught(tmp_path):
    """The checker itself: a lazy import of the engine from an observable is reported with its line."""
    fake = ROOT / "observables" / "_fake_back_edge.py"
    fake.write_text("def f():\n    from ..engine import trainer\n    return trainer\n")
    try:
        found = _violations([fake])
    finally:
        fake.unlink()
    assert found == ["lmech/observables/_fake_back_edge.py:2 (observables) imports lmech.engine (engine, a higher floor)"]
