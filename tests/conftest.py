"""Shared fixtures: the two chain backends, funded accounts, a deployed federation.

`chain` runs each test once on the embedded eth-tester chain and once on a real
anvil that a session fixture starts on a free port and stops at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ledger.chain import Chain, connect, embedded_chain
from ledger.devnet import AnvilProcess, start_anvil
from tests.harness import Harness


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    proc = start_anvil(log_path=tmp_path_factory.mktemp("anvil") / "anvil.log")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain(request: pytest.FixtureRequest) -> Chain:
    if request.param == "embedded":
        return embedded_chain()
    proc: AnvilProcess = request.getfixturevalue("anvil")
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
