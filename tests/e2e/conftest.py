"""Dev-net fixtures: Kubo nodes in a private swarm, a mining anvil, peer processes, sample data."""

from __future__ import annotations

import csv
import gzip
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ledger.devnet import AnvilProcess, GethProcess, start_anvil, start_geth
from node.datasets import DEFAULT_DATA
from node.sim.cluster import write_sample
from node.store.kubo import KuboNode, new_swarm_key, start_kubo

VERTICAL_ROWS = 20000  # enough validation rows (about 1300) for party values to stand out of the noise


@pytest.fixture(scope="session")
def kubo_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[KuboNode]]:
    """Four Kubo nodes sharing a swarm key, each connected to the others."""
    root = tmp_path_factory.mktemp("kubo-nodes")
    key = new_swarm_key()
    nodes: list[KuboNode] = []
    try:
        for name in ("a", "b", "c", "d"):
            node = start_kubo(root / name, key)
            for other in nodes:
                node.connect(other)
            nodes.append(node)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="session")
def mining_anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    """An anvil that mines a block every second, so phase windows pass with nobody sending anything."""
    proc = start_anvil(log_path=tmp_path_factory.mktemp("anvil-mining") / "anvil.log", block_time=1)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def mining_geth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GethProcess]:
    """geth --dev sealing a block every second: the second chain client, windows passing in real time."""
    root = tmp_path_factory.mktemp("geth-mining")
    proc = start_geth(root / "data", log_path=root / "geth.log", period=1)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(params=["anvil", pytest.param("geth", marks=pytest.mark.geth)])
def mining_chain(request: pytest.FixtureRequest) -> AnvilProcess | GethProcess:
    """A chain node that makes a block every second: anvil, then geth (nothing depends on one client)."""
    node: AnvilProcess | GethProcess = request.getfixturevalue(f"mining_{request.param}")
    return node


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Peer processes a test starts; whatever is still running at the end is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="session")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every seventh row of the bundled data (it is sorted by date, so no head will do)."""
    return write_sample(tmp_path_factory.mktemp("data") / "bank-sample.csv")


@pytest.fixture(scope="session")
def bank_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VERTICAL_ROWS rows of the bank data, with a `customer` id and a `noise` column."""
    with gzip.open(DEFAULT_DATA, "rt") as fh:
        rows = list(csv.reader(fh))
    rng = np.random.default_rng(7)
    pick = rng.choice(len(rows) - 1, VERTICAL_ROWS, replace=False) + 1
    path = tmp_path_factory.mktemp("vertical") / "bank-sample.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["customer", *rows[0], "noise"])
        for i, k in enumerate(pick):
            w.writerow([f"C{i:05d}", *rows[k], f"{rng.normal():.6f}"])
    return path
