"""The package layering of docs/architecture.md: every import (lazy ones inside functions
included) points down the table below, and no package depends on itself through another."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dartsim"
BASE = {"units", "errors", "fileio", "text", "names", "signals", "__init__", "__main__"}
"""Modules of the base layer: named once, used everywhere (dartsim/*.py but cli)."""
ALLOWED: dict[str, set[str]] = {
    "base": {"cli"},  # __main__ starts the command line
    "data": set(),
    "specs": {"base"},
    "workload": {"base", "specs"},
    "engine": {"base", "specs", "workload"},
    "trace": {"base", "specs"},
    "record": {"base", "specs", "trace"},
    "policies": {"base", "specs", "workload", "trace", "record"},
    "replay": {"base", "specs", "workload", "engine", "trace", "policies"},
    "serve": {"base", "specs", "workload", "engine", "trace", "policies", "replay"},
    "calibrate": {"base", "specs", "workload", "engine"},
    "validate": {"base", "specs", "workload", "engine", "trace", "record", "replay", "serve", "calibrate"},
    "study": {
        "base",
        "specs",
        "workload",
        "engine",
        "trace",
        "record",
        "policies",
        "replay",
        "serve",
        "validate",
    },
    "report": {
        "base",
        "specs",
        "workload",
        "engine",
        "trace",
        "replay",
        "calibrate",
        "validate",
        "study",
        "policies",
        "serve",
    },
    "commands": {
        "base",
        "specs",
        "workload",
        "engine",
        "trace",
        "record",
        "policies",
        "replay",
        "calibrate",
        "validate",
        "study",
        "report",
        "serve",
    },
    "cli": {"base", "commands"},
}
"""Which layers each layer may import (besides itself)."""


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    return parts[1]


def _imports() -> dict[tuple[str, str], list[str]]:
    """(importing layer, imported layer) -> the files with such an import."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        source = _layer(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dartsim"):
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("dartsim")]
            else:
                continue
            for target in targets:
                layer = _layer(target)
                if layer != source:
                    edges.setdefault((source, layer), []).append(str(path.relative_to(PACKAGE)))
    return edges


def test_every_layer_is_listed() -> None:
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert layers <= set(ALLOWED), sorted(layers - set(ALLOWED))


def test_imports_point_down_the_layering() -> None:
    wrong = {
        f"{a} -> {b}: {', '.join(sorted(set(files)))}"
        for (a, b), files in _imports().items()
        if b not in ALLOWED[a]
    }
    assert not wrong, sorted(wrong)


def test_the_allowed_table_has_no_cycle() -> None:
    """So that the test above also rules out import cycles between layers."""
    state: dict[str, str] = {}

    def visit(layer: str, path: tuple[str, ...]) -> None:
        if state.get(layer) == "done":
            return
        assert state.get(layer) != "open", f"cycle: {' -> '.join((*path, layer))}"
        state[layer] = "open"
        for below in ALLOWED[layer] - ({"cli"} if layer == "base" else set()):
            visit(below, (*path, layer))
        state[layer] = "done"

    for layer in ALLOWED:
        visit(layer, ())
