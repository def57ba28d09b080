"""Shared fixtures: the chain backends, funded accounts, a deployed federation.

`chain` runs each test once on the embedded eth-tester chain, once on a real
anvil and once on a real geth in developer mode, each started by a session
fixture on a free port and stopped at the end. geth cannot move its clock, so
a test that does (`chain.advance_time`) is marked `timetravel` and is not
generated for geth; the timeouts are checked on geth by the dev-net federation
that runs on it with real windows (tests/e2e/test_devnet.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ledger.chain import Chain, connect, embedded_chain
from ledger.devnet import AnvilProcess, GethProcess, start_anvil, start_geth
from tests.harness import Harness


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    proc = start_anvil(log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def geth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GethProcess]:
    root = tmp_path_factory.mktemp("geth")
    proc = start_geth(root / "data", log_path=root / "geth.log")
    try:
        yield proc
    finally:
        proc.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on a `chain` runs on each backend; one that moves chain time, not on geth."""
    if "chain" not in metafunc.fixturenames:
        return
    kinds = ["embedded", pytest.param("anvil", marks=pytest.mark.anvil)]
    if metafunc.definition.get_closest_marker("timetravel") is None:
        kinds.append(pytest.param("geth", marks=pytest.mark.geth))
    metafunc.parametrize("chain", kinds, indirect=True)


@pytest.fixture
def chain(request: pytest.FixtureRequest) -> Chain:
    if request.param == "embedded":
        return embedded_chain()
    proc: AnvilProcess | GethProcess = request.getfixturevalue(request.param)
    return connect(proc.url, proc.chain_id)


@pytest.fixture
def embedded() -> Chain:
    return embedded_chain()


@pytest.fixture
def fed(chain: Chain) -> Harness:
    """A deployed federation of 4 founders (not yet joined) on `chain`."""
    return Harness.create(chain, founders=4)


@pytest.fixture
def joined(fed: Harness) -> Harness:
    """`fed` with every founder joined: round 1 is open."""
    fed.join_all()
    return fed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") and config.getoption("-m"):
        # CI runs the whole suite: a marker filter there would hide a missing setup step.
        raise pytest.UsageError("CI must not deselect tests with -m")
