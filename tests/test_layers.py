"""eoslib's three layers import in one direction only: book → mechanisms → engine.

Checked on the source (every ``import`` statement, at any depth), so a lazy import inside a
function cannot hide an edge of the graph.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "eoslib"
RANK = {"engine": 0, "mechanisms": 1, "book": 2}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "eoslib" and parts[1] in RANK else None


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


LAYERED = sorted(p for layer in RANK for p in (SRC / layer).glob("*.py"))


@pytest.mark.parametrize("path", LAYERED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_imports_point_down(path):
    own = RANK[path.parent.name]
    upward = [m for m in _imports(path) if _layer(m) is not None and RANK[_layer(m)] > own]
    assert not upward, f"{path.parent.name}/{path.name} imports a higher layer: {upward}"


@pytest.mark.parametrize("path", LAYERED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_intra_package_import_inside_functions(path):
    """Imports of eoslib itself sit at the top of the module, so the graph is visible there."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    hidden = [node.lineno for node in ast.walk(tree)
              if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top
              and any(m.startswith("eoslib") for m in
                      ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]))]
    assert not hidden, f"{path.parent.name}/{path.name}: eoslib imported inside a function at lines {hidden}"


def test_every_module_is_in_a_layer():
    loose = sorted(p.name for p in SRC.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"modules outside the three layers: {loose}"
