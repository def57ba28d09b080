"""The chain node the tests and `fedchain devnet` start leaves nothing behind on disk.

anvil keeps the state of every recent block in memory and, past a limit, writes older
states to `~/.foundry/anvil/tmp/` — a directory it never removes, not even on SIGTERM.
A long test session left tens of gigabytes there and filled a CI disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.chain import connect
from ledger.devnet import start_anvil

pytestmark = pytest.mark.anvil

# anvil moved states to disk after somewhere between 600 and 1,100 blocks with a
# state change each (measured with anvil 1.7.1); 1,300 is past that with a margin
BLOCKS = 1_300


def test_anvil_writes_no_state_history_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # anvil writes under $HOME/.foundry
    node = start_anvil(log_path=tmp_path / "anvil.log")
    try:
        chain = connect(node.url, node.chain_id)
        w3 = chain.w3
        sender, receiver = w3.eth.accounts[:2]
        for _ in range(BLOCKS):  # automine: one block, one new state per transaction
            sent = w3.eth.send_transaction({"from": sender, "to": receiver, "value": 1})
        w3.eth.wait_for_transaction_receipt(sent, timeout=60)  # a loaded machine may answer before it is mined
        assert w3.eth.get_balance(receiver) % 10**18 == BLOCKS  # every transaction mined: the chain still works
    finally:
        node.stop()
    left = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    assert not [p for p in left if p.startswith(".foundry/anvil/tmp")], left
