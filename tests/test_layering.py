"""Imports point one way: node -> ledger. The ledger never imports the node."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ledger_never_imports_node() -> None:
    files = sorted((ROOT / "ledger").rglob("*.py"))
    assert files
    offenders = [str(p.relative_to(ROOT)) for p in files if "node" in _imports(p)]
    assert offenders == []


def test_fedchain_never_imports_the_benchmarks_or_their_yardstick() -> None:
    """flwr and matplotlib are the `bench` extra: the product must run without them."""
    files = sorted((ROOT / "ledger").rglob("*.py")) + sorted((ROOT / "node").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in files if _imports(p) & {"bench", "flwr", "matplotlib"}]
    assert offenders == []
