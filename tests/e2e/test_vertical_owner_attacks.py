"""A task owner that tries to get honest parties slashed, on the embedded chain.

The owner withholds its gradients from the second epoch on, hoping the parties,
waiting for them, miss their epoch commitments and are timed out: their
slashed stakes would then be the owner's to keep or burn. Each party commits
what it sent before its window runs out, so none is dropped and each is paid.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ledger.chain import embedded_chain
from ledger.vertical import Kind, Stage
from node.sim.vertical import BANK_PARTIES, Setup, TaskRun, VerticalConfig
from node.store import EmbeddedStore
from node.vertical.node import OwnerNode


class _Withholding(OwnerNode):
    """An owner that sends no gradient from the second epoch on (it never logs them)."""

    def _send(self, to: str, kind: Kind, epoch: int, seq: int, make: Callable[[], bytes], stat: str) -> bool:
        if kind == Kind.GRADIENT and epoch >= 1:
            return False
        return super()._send(to, kind, epoch, seq, make, stat)


def test_an_owner_withholding_gradients_cannot_get_the_parties_slashed(bank_sample: Path, tmp_path: Path) -> None:
    cfg = VerticalConfig(data=bank_sample, parties=BANK_PARTIES, id_column="customer", rounds=3, overlap=0.9)
    setup = Setup.deploy(cfg, embedded_chain())
    run = TaskRun(setup, EmbeddedStore(tmp_path / "store"))
    run.owner.__class__ = _Withholding
    run.play(lambda _line: None)
    task = setup.task
    assert task.stage() == Stage.PAID
    assert not task.events("PartyDropped") and not task.events("Abandoned")
    committed = {(e["args"]["member"], e["args"]["epoch"]) for e in task.events("EpochCommitted")}
    for name in setup.spec.names:
        address = setup.accounts[name].address
        assert {(address, e) for e in range(3)} <= committed  # every epoch, gradients or not
        assert setup.token.balance_of(address) >= setup.before[name]  # its stake back, and its share
    gradients = {e["args"]["epoch"] for e in task.events("Message") if e["args"]["kind"] == Kind.GRADIENT}
    assert gradients == {0}  # the owner really withheld them
    for name in setup.spec.names:  # epochs 2 and 3: its first step's embedding, then no gradient: cut short
        address = setup.accounts[name].address
        sent = [e["args"] for e in task.events("Message") if e["args"]["from"] == address]
        for epoch in (1, 2):
            assert [a["seq"] for a in sent if a["kind"] == Kind.EMBEDDING and a["epoch"] == epoch] == [0]
