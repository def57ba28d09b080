"""Store fixtures: the embedded store, and two real Kubo nodes in a private swarm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.store import EmbeddedStore, KuboStore, Store
from node.store.kubo import KuboNode, new_swarm_key, start_kubo


@pytest.fixture(scope="session")
def kubo_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KuboNode, KuboNode]]:
    root = tmp_path_factory.mktemp("kubo")
    key = new_swarm_key()
    a = start_kubo(root / "a", key)
    try:
        b = start_kubo(root / "b", key)
        try:
            b.connect(a)
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.fixture(params=["embedded", pytest.param("kubo", marks=pytest.mark.kubo)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, Store]:
    """A writer's store and a reader's: one directory, or two Kubo nodes that must exchange blocks."""
    if request.param == "embedded":
        shared = EmbeddedStore(tmp_path / "blobs")
        return shared, shared
    a, b = request.getfixturevalue("kubo_pair")
    return KuboStore(a.api, timeout=10), KuboStore(b.api, timeout=10)
