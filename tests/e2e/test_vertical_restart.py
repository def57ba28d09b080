"""A vertical member that crashes mid-task restarts from its state file and goes on, as if it never stopped.

Each member keeps its working state on disk (`node.vertical.state`). Here
members crash at the worst moments: right after a message is logged or a
transaction is mined, before the member saved anything after it. Each crash
replaces the member with a fresh one built from its state file, as a restarted
process would be. The task must end exactly as the same task without crashes
(losses, validation AUCs, Shapley values, shares, rewards, test AUC), with no
message logged twice and no epoch committed twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import embedded_chain
from ledger.vertical import Kind, Stage
from node.errors import NodeError
from node.privacy.seal import SealKey
from node.sim.vertical import BANK_PARTIES, Setup, VerticalConfig
from node.store import EmbeddedStore
from node.vertical.daemon import measured_by, sample_key
from node.vertical.messages import merkle_root
from node.vertical.node import OwnerNode, PartyNode, TaskMember
from node.vertical.state import StateFile


class _Crash(Exception):
    """The process dies here."""


# member -> the crashes it suffers: ("send", n) right after its n-th message is logged, ("tx", n) right after
# its n-th transaction of the task (join and fund aside) is mined; counted over its whole life, restarts included
CRASHES: dict[str, list[tuple[str, int]]] = {
    "campaign": [("send", 1), ("send", 3), ("send", 5), ("send", 30), ("tx", 1), ("tx", 2), ("tx", 4)],
    "demographics": [("send", 1), ("tx", 1), ("send", 12), ("tx", 2)],
    "finance": [("send", 2), ("send", 3), ("send", 20)],
}


def _cfg(path: Path) -> VerticalConfig:
    return VerticalConfig(data=path, parties=BANK_PARTIES, id_column="customer", rounds=3, overlap=0.9)


def _run(path: Path, tmp: Path, crashes: dict[str, list[tuple[str, int]]]) -> tuple[dict[str, Any], Setup, int]:
    """The task, every member stepped in turn; crashed members rebuilt from their state files."""
    setup = Setup.deploy(_cfg(path), embedded_chain())
    store = EmbeddedStore(tmp / "store")
    keys = {n: SealKey.generate() for n in setup.data}
    counts: Counter[tuple[str, str]] = Counter()
    owner = setup.spec.owner.name

    def make(name: str) -> OwnerNode | PartyNode:
        common: dict[str, Any] = {
            "account": setup.accounts[name],
            "task": setup.task,
            "store": store,
            "key": keys[name],
            "from_block": setup.block,
            "state": StateFile(tmp / f"{name}.state", "pw"),
        }
        node: OwnerNode | PartyNode
        if name == owner:
            node = OwnerNode(
                setup.spec, name, setup.owner, setup.xs[name], setup.labels, sample_key=sample_key(0), **common
            )
        else:
            node = PartyNode(setup.spec, name, setup.data[name], setup.xs[name], **common)
        _arm(node, name, crashes.get(name, []), counts)
        return node

    nodes = {n: make(n) for n in setup.data}
    restarts = 0
    for _ in range(20_000):
        if all(node.done for node in nodes.values()):
            break
        for name in list(nodes):
            if nodes[name].done:
                continue
            try:
                nodes[name].step()
            except _Crash:
                nodes[name] = make(name)
                restarts += 1
    else:
        raise AssertionError(f"the task did not finish: {setup.task.stage().name}")
    measured = [measured_by(nodes[owner]), *(measured_by(nodes[n]) for n in setup.spec.names)]
    psi = {"owner_rows": 0, "intersection": setup.task.intersection(), "seconds": 0}
    return setup.document(psi, measured), setup, restarts


def _arm(node: TaskMember, name: str, crashes: list[tuple[str, int]], counts: Counter[tuple[str, str]]) -> None:
    """Make `node` crash right after the sends and transactions `crashes` names."""
    send, account = node._send, node._account

    def after(kind: str, result: Any) -> Any:
        counts[(name, kind)] += 1
        if (kind, counts[(name, kind)]) in crashes:
            raise _Crash
        return result

    def crashing_send(to: str, kind: Kind, epoch: int, seq: int, make: Callable[[], bytes], stat: str) -> bool:
        sent = send(to, kind, epoch, seq, make, stat)
        return after("send", sent) if sent else sent

    def crashing_account(stat: str, receipt: Any) -> None:
        account(stat, receipt)
        after("tx", None)

    node._send = crashing_send  # type: ignore[method-assign]
    node._account = crashing_account  # type: ignore[method-assign]


def _outcome(doc: dict[str, Any]) -> Any:
    rounds = [(r["epoch"], r["loss"], r["valid_auc"]) for r in doc["rounds"]]  # (what a process measured: no)
    parties = [(p["name"], p["role"], p["shapley"], p["share_bps"], p["reward"]) for p in doc["parties"]]
    return rounds, parties, doc["coalitions"], doc["federated_auc"]


def _trail(setup: Setup) -> tuple[Counter[Any], Counter[Any]]:
    logged = Counter(
        (e["args"]["from"], e["args"]["to"], e["args"]["kind"], e["args"]["epoch"], e["args"]["seq"])
        for e in setup.task.events("Message")
    )
    committed = Counter((e["args"]["member"], e["args"]["epoch"]) for e in setup.task.events("EpochCommitted"))
    return logged, committed


def test_members_that_crash_at_the_worst_moments_finish_the_task_as_if_they_never_had(
    bank_sample: Path, tmp_path: Path
) -> None:
    calm, calm_setup, none = _run(bank_sample, tmp_path / "calm", {})
    stormy, setup, restarts = _run(bank_sample, tmp_path / "stormy", CRASHES)
    assert none == 0 and restarts == sum(len(c) for c in CRASHES.values())
    assert setup.task.stage() == Stage.PAID
    assert all(p["role"] != "dropped" for p in stormy["parties"])
    assert _outcome(stormy) == _outcome(calm)
    logged, committed = _trail(setup)
    assert max(logged.values()) == 1 and max(committed.values()) == 1  # nothing sent or committed twice
    assert sum(logged.values()) == sum(_trail(calm_setup)[0].values())
    _roots_match_the_log(setup)
    assert not list(tmp_path.glob("stormy/*.state"))  # the task is over: the secrets are gone from disk


def _roots_match_the_log(setup: Setup) -> None:
    """Each epoch commitment is the Merkle root of the messages its member logged that epoch, in order."""
    sent: dict[tuple[str, int], list[bytes]] = {}
    for e in setup.task.events("Message"):
        a = e["args"]
        if Kind(a["kind"]) in (Kind.EMBEDDING, Kind.GRADIENT):
            sent.setdefault((a["from"], a["epoch"]), []).append(bytes(a["digest"]))
    commits = setup.task.events("EpochCommitted")
    assert len(commits) == 3 * 3
    for c in commits:
        a = c["args"]
        assert bytes(a["root"]) == merkle_root(sent.get((a["member"], a["epoch"]), []))


def test_a_member_whose_state_is_gone_says_so_and_stops(bank_sample: Path, tmp_path: Path) -> None:
    setup = Setup.deploy(_cfg(bank_sample), embedded_chain())
    store = EmbeddedStore(tmp_path / "store")
    keys = {n: SealKey.generate() for n in setup.data}

    def party(name: str, state: Path) -> PartyNode:
        return PartyNode(
            setup.spec,
            name,
            setup.data[name],
            setup.xs[name],
            account=setup.accounts[name],
            task=setup.task,
            store=store,
            key=keys[name],
            from_block=setup.block,
            state=StateFile(state, "pw"),
        )

    owner = OwnerNode(
        setup.spec,
        "campaign",
        setup.owner,
        setup.xs["campaign"],
        setup.labels,
        account=setup.accounts["campaign"],
        task=setup.task,
        store=store,
        key=keys["campaign"],
        from_block=setup.block,
    )
    finance = party("finance", tmp_path / "finance.state")
    demographics = party("demographics", tmp_path / "demographics.state")
    for _ in range(3):
        for node in (owner, finance, demographics):
            node.step()
    assert (tmp_path / "finance.state").exists()
    (tmp_path / "finance.state").unlink()
    with pytest.raises(NodeError, match="its state file is gone"):
        party("finance", tmp_path / "finance.state").step()
    (tmp_path / "demographics.state").write_bytes(b"FCVST1\x00\x00" + bytes(40))
    with pytest.raises(NodeError, match="does not open"):
        party("demographics", tmp_path / "demographics.state")
    with pytest.raises(NodeError, match="does not open"):
        PartyNode(
            setup.spec,
            "finance",
            setup.data["finance"],
            setup.xs["finance"],
            account=setup.accounts["finance"],
            task=setup.task,
            store=store,
            key=keys["finance"],
            from_block=setup.block,
            state=_other_password(tmp_path, finance),
        )


def _other_password(tmp: Path, node: PartyNode) -> StateFile:
    """`node`'s state saved again, then opened with another password."""
    node.state = StateFile(tmp / "again.state", "pw")
    node.save()
    return StateFile(tmp / "again.state", "not the password")
