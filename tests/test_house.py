"""The house rules that a reviewer would otherwise check by eye: who may import what, and no cycles
(imports under TYPE_CHECKING count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kb"
# A third-party package, and the only part of kb that may import it.
OWNERS = {"mcp": "kb.server", "mcp_types": "kb.server", "uvicorn": "kb.server", "starlette": "kb.server"}
OWNERS |= {"tantivy": "kb.index", "click": "kb.cli"}
OWNERS |= {
    "onnxruntime": "kb.semantic",
    "onnx": "kb.semantic",
    "tokenizers": "kb.semantic",
    "numpy": "kb.semantic",
}
# Also owners: near-copy sketches and their folding are vectorized (per passage when writing, per
# search over every hit scanned), where Python loops would cost several times as much.
SHARED_OWNERS = {"numpy": ("kb.index._copies",)}


def _find_modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = file
    return found


MODULES = _find_modules()


def _imports(name: str, file: Path) -> set[str]:
    """Every module `file` imports, absolute, whether at the top, in a function or for type checking."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            # `from pkg import mod` imports the module; `from pkg import name` what pkg's face shows.
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return names


GRAPH = {
    name: {imported for imported in _imports(name, file) if imported in MODULES and imported != name}
    for name, file in MODULES.items()
}


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_only_its_owner_imports_a_library(library: str) -> None:
    owners = (OWNERS[library], *SHARED_OWNERS.get(library, ()))
    offenders = [
        name
        for name, file in MODULES.items()
        if not any(name == owner or name.startswith(owner + ".") for owner in owners)
        and any(imported.split(".")[0] == library for imported in _imports(name, file))
    ]
    assert offenders == []


def test_no_import_cycle_inside_kb() -> None:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for imported in sorted(GRAPH[name]):
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []
