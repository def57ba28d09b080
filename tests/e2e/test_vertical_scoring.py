"""Using a paid vertical task's model: the owner scores prospects, asking the parties that are online.

One task on the embedded chain and store is trained once (module fixture); each
test opens its own scoring request against it. Every member may be an
attacker: an owner fishing for embeddings of customers whose ids it does not
know, a party sending garbage, a request larger than a party allows, and a party
that is simply offline.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ledger.chain import embedded_chain
from ledger.vertical import Kind
from node.errors import NodeError
from node.sim.vertical import BANK_PARTIES, Setup, TaskRun, VerticalConfig
from node.store import EmbeddedStore
from node.vertical.data import PartyData
from node.vertical.messages import (
    MessageError,
    decode_matches,
    decode_reply,
    encode_matches,
    encode_reply,
    matches_size,
)
from node.vertical.model import OwnerModel, load_owner_model, save_model
from node.vertical.node import PartyNode
from node.vertical.psi import MAX_SET, decode_points, hash_to_group, point_count, split_messages
from node.vertical.scoring import Scorer, write_scores

PROSPECTS = 400


@pytest.fixture(scope="module")
def paid(bank_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> TaskRun:
    cfg = VerticalConfig(data=bank_sample, parties=BANK_PARTIES, id_column="customer", rounds=2, overlap=0.9)
    setup = Setup.deploy(cfg, embedded_chain())
    tmp = tmp_path_factory.mktemp("scoring")
    run = TaskRun(setup, EmbeddedStore(tmp / "store"))
    for node in (run.owner, *run.parties.values()):
        node.model_path = tmp / f"{node.name}.model.npz"
    run.play(lambda _line: None)
    for node in run.parties.values():
        node.serve = True
    return run


def _rows(run: TaskRun, seed: int = 0) -> list[int]:
    """Some of the owner's customers: most are held by every party, some (overlap 0.9) are not."""
    return sorted(np.random.default_rng(seed).choice(len(run.setup.owner.ids), PROSPECTS, replace=False).tolist())


def _owner_model(run: TaskRun) -> OwnerModel:
    role = run.owner.role
    assert role is not None
    return OwnerModel(role.top, role.fallback, run.spec.names, [n for n in run.spec.names if n not in role.silent])


def _scorer(run: TaskRun, rows: list[int], model: OwnerModel | None = None) -> Scorer:
    owner = run.setup.owner
    prospects = PartyData(owner.name, [owner.ids[r] for r in rows], owner.columns, owner.aligned(rows))
    o = run.owner
    return Scorer(
        run.spec,
        owner.name,
        model or _owner_model(run),
        prospects,
        run.setup.xs[owner.name][rows],
        account=o.account,
        task=o.task,
        store=o.store,
        key=o.key,
        from_block=run.setup.block,
    )


def _expected(run: TaskRun, rows: list[int], offline: tuple[str, ...] = ()) -> tuple[npt.NDArray[Any], list[list[str]]]:
    """What the scores must be, computed with every party's data in one place (only a test can)."""
    model, setup = _owner_model(run), run.setup
    ids = [setup.owner.ids[r] for r in rows]
    inputs, missing = [], [[] for _ in rows]
    for p in run.spec.names:
        at = {k: i for i, k in enumerate(setup.data[p].ids)}
        e = np.tile(model.fallback[p], (len(rows), 1))
        for i, k in enumerate(ids):
            if p in offline or k not in at:
                missing[i].append(p)
            else:
                node = run.parties[p]
                assert node.model is not None
                e[i] = node.model.bottom.embed(setup.xs[p][[at[k]]])[0]
        inputs.append(e)
    return model.top.scores(setup.xs[setup.owner.name][rows], inputs), missing


def _serving(run: TaskRun, *names: str) -> list[Any]:
    return [run.parties[n].step for n in names]


def test_scores_are_the_trained_models_and_a_party_learns_only_which_customers_were_asked(paid: TaskRun) -> None:
    rows = _rows(paid)
    scorer = _scorer(paid, rows)
    scored = scorer.run(30.0, lambda _line: None, others=_serving(paid, *paid.spec.names))
    expected, missing = _expected(paid, rows)
    assert not scored.failed and scored.missing == missing
    assert any(missing) and not all(missing)  # some prospects lack a party: the fallback stands in
    np.testing.assert_allclose(np.array(scored.logits), expected, rtol=0, atol=1e-5)
    for n in paid.spec.names:
        held = sum(n not in m for m in missing)
        assert scored.answered[n] == held
    # the audit trail: two queries and two replies per party, numbered by the request
    r = scored.request
    scoring = [e["args"] for e in paid.task.events("Message") if Kind(e["args"]["kind"]) in (Kind.QUERY, Kind.REPLY)]
    logged = [a for a in scoring if a["epoch"] == r]
    kinds = sorted((Kind(a["kind"]), a["seq"]) for a in logged)
    assert kinds == sorted([(Kind.QUERY, 0), (Kind.QUERY, 1), (Kind.REPLY, 0), (Kind.REPLY, 1)] * 2)
    # every byte a party received for the request: blinded points only, in exactly the protocol's sizes
    ids = [paid.setup.owner.ids[x].encode() for x in rows]
    for n, node in paid.parties.items():
        got = [_opened(node, a) for a in logged if paid.spec.name_of(a["to"]) == n]
        assert [len(g) for g in got] == [12 + 32 * PROSPECTS, matches_size(scored.answered[n])]
        assert point_count(got[0], "query", PROSPECTS) == PROSPECTS
        positions, _ = decode_matches(got[1], PROSPECTS, "matches")
        assert [i for i, m in enumerate(scored.missing) if n not in m] == sorted(psi_rows(scorer, n, positions))
        plain = [hash_to_group(node.tag, k.decode()) for k in ids]
        for g in got:
            assert not any(k in g or hashlib.sha256(k).digest() in g for k in ids)
            assert not any(p in g for p in plain)


def psi_rows(scorer: Scorer, party: str, positions: list[int]) -> list[int]:
    """The owner's rows at `positions` of its blinded list sent to `party`."""
    return [scorer.psis[party].order[i] for i in positions]


def _opened(node: PartyNode, logged: Any) -> bytes:
    ctx = node._context(node.owner, node.name, Kind(logged["kind"]), logged["epoch"], logged["seq"])
    return node.key.open(node.store.get(logged["cid"], 1 << 26), ctx, 1 << 26)


def test_a_party_offline_is_named_and_its_mean_embedding_stands_in(paid: TaskRun) -> None:
    rows = _rows(paid, 1)
    lines: list[str] = []
    scored = _scorer(paid, rows).run(10.0, lines.append, others=_serving(paid, "demographics"), poll=0.2)
    assert set(scored.failed) == {"finance"} and "did not answer within 10 s" in scored.failed["finance"]
    assert any("finance: did not answer" in line for line in scored.lines())
    expected, missing = _expected(paid, rows, offline=("finance",))
    assert scored.missing == missing and all("finance" in m for m in missing)
    np.testing.assert_allclose(np.array(scored.logits), expected, rtol=0, atol=1e-5)


def test_with_no_fallback_a_prospect_missing_a_party_is_left_unscored(paid: TaskRun, tmp_path: Path) -> None:
    rows = _rows(paid, 2)
    scorer = _scorer(paid, rows)
    scorer.spec = dataclasses.replace(scorer.spec, model=dataclasses.replace(scorer.spec.model, fallback="none"))
    scored = scorer.run(30.0, lambda _line: None, others=_serving(paid, *paid.spec.names))
    unscored = [z is None for z in scored.logits]
    assert unscored == [bool(m) for m in scored.missing] and any(unscored) and not all(unscored)
    write_scores(tmp_path / "scored.csv", "customer", scored)
    lines = (tmp_path / "scored.csv").read_text().splitlines()
    assert lines[0] == "customer,score,rank,missing" and len(lines) == PROSPECTS + 1
    ranks = sorted(int(line.split(",")[2]) for line in lines[1:] if line.split(",")[2])
    assert ranks == list(range(1, unscored.count(False) + 1))


class _Fishing(Scorer):
    """An owner that, instead of the matches the protocol says, sends each party points of its choosing."""

    forge = "honest"

    def _matches(self, n: str) -> tuple[list[int], list[bytes]] | None:
        honest = super()._matches(n)
        if honest is None or self.forge == "honest":
            return honest
        positions, points = honest
        asked = len(self.prospects.ids)
        data = self._receive(n, Kind.REPLY, self.request, 0, 1 << 27)
        assert data is not None
        first, _, theirs = split_messages(data, 3, "reply", MAX_SET)
        if self.forge == "their ids":  # the party's own blinded ids, sent back as if matched
            pts = decode_points(theirs, point_count(theirs, "ids", MAX_SET), "ids", validate=False)[:asked]
            return list(range(len(pts))), pts
        if self.forge == "first secret":  # the matched prospects, but under the party's first secret
            once = decode_points(first, asked, "first", validate=False)
            return positions, self.psis[n].unblind([once[i] for i in positions], "first")
        return positions, points[1:] + points[:1]  # "shifted": each point at another prospect's position


@pytest.mark.parametrize("forge", ["honest", "their ids", "first secret", "shifted"])
def test_an_owner_gets_embeddings_only_of_customers_it_names(paid: TaskRun, forge: str) -> None:
    """The party decides which of its rows to embed from values it computes itself: whatever the owner
    sends back, every embedding it gets is of a customer whose id it put in its query."""
    owner, party = paid.setup.owner, paid.parties["finance"]
    holds = set(paid.setup.data["finance"].ids)
    held = [r for r in range(len(owner.ids)) if owner.ids[r] in holds][:40]
    named = held + [r for r in range(len(owner.ids)) if owner.ids[r] not in holds][:10]  # and 10 it does not
    base = _scorer(paid, sorted(named))
    fishing = _Fishing(paid.spec, owner.name, base.model, base.prospects, base.x, **_member_kw(paid))
    fishing.forge = forge
    fishing.begin()
    fishing.run(30.0, lambda _line: None, others=_serving(paid, *paid.spec.names), begun=True)
    assert party.model is not None
    at = {k: i for i, k in enumerate(party.ids)}
    allowed = {tuple(party.model.bottom.embed(party.x[[at[owner.ids[r]]]])[0].round(4)) for r in held}
    _, got = fishing.got["finance"]
    assert {tuple(e.round(4)) for e in got} <= allowed
    assert len(got) == (40 if forge in ("honest", "shifted") else 0)


def _member_kw(run: TaskRun) -> dict[str, Any]:
    o = run.owner
    return {"account": o.account, "task": o.task, "store": o.store, "key": o.key, "from_block": run.setup.block}


def test_two_scoring_requests_at_once_are_refused_not_mixed(paid: TaskRun) -> None:
    first, second = _scorer(paid, _rows(paid, 6)), _scorer(paid, _rows(paid, 7))
    assert first.begin() == second.begin()
    first.step()
    with pytest.raises(NodeError, match="another scoring request"):
        second.step()
    scored = first.run(30.0, lambda _line: None, others=_serving(paid, *paid.spec.names), begun=True)
    assert not scored.failed


def test_scoring_messages_are_checked_before_use() -> None:
    positions, points = [0, 3, 7], [bytes([i]) * 32 for i in (1, 2, 3)]
    data = encode_matches(positions, points)
    assert decode_matches(data, 8, "m") == (positions, points)
    for bad, why in [
        (data[:-1], "bytes for"),
        (encode_matches([0, 3, 8], points), "past the 8"),
        (encode_matches([3, 3, 7], points), "strictly increasing"),
        (encode_matches(positions, [points[0]] * 3), "repeated"),
        (b"FCSCR1\x00\x00" + data[8:], "bad magic"),
    ]:
        with pytest.raises(MessageError, match=why):
            decode_matches(bad, 8, "m")
    with pytest.raises(MessageError, match="3 rows for 2"):
        decode_matches(data, 2, "m")
    reply = encode_reply([1, 4], np.ones((2, 4), dtype=np.float32))
    assert decode_reply(reply, 5, 4, "r")[0] == [1, 4]
    with pytest.raises(MessageError, match="past the 4"):
        decode_reply(reply, 4, 4, "r")
    with pytest.raises(MessageError, match="NaN"):
        decode_reply(encode_reply([1], np.full((1, 4), np.nan, dtype=np.float32)), 5, 4, "r")


def test_a_request_larger_than_a_party_allows_is_refused(paid: TaskRun) -> None:
    node = paid.parties["finance"]
    node.max_query = PROSPECTS - 1
    try:
        scored = _scorer(paid, _rows(paid, 3)).run(10.0, lambda _line: None, others=_serving(paid, *paid.spec.names))
    finally:
        node.max_query = 200_000
    assert "finance" in scored.failed and "demographics" in scored.answered
    assert "more than the 399 allowed" in node.served[scored.request]


def test_a_malformed_reply_is_refused_and_the_fallback_used(paid: TaskRun) -> None:
    node = paid.parties["demographics"]
    honest = node._send

    def garbling(to: str, kind: Kind, epoch: int, seq: int, make: Any, stat: str) -> bool:
        if kind == Kind.REPLY and seq == 1:
            return honest(to, kind, epoch, seq, lambda: make()[:-4] + b"\x00\x00\xc0\x7f", stat)  # last value NaN
        return honest(to, kind, epoch, seq, make, stat)

    node._send = garbling  # type: ignore[method-assign]
    try:
        rows = _rows(paid, 4)
        scored = _scorer(paid, rows).run(30.0, lambda _line: None, others=_serving(paid, *paid.spec.names))
    finally:
        del node._send
    assert "NaN" in scored.failed["demographics"] and "finance" in scored.answered
    expected, _ = _expected(paid, rows, offline=("demographics",))
    np.testing.assert_allclose(np.array(scored.logits), expected, rtol=0, atol=1e-5)


def test_models_kept_on_disk_score_as_in_memory_after_a_restart(paid: TaskRun, tmp_path: Path) -> None:
    rows = _rows(paid, 5)
    in_memory = _scorer(paid, rows).run(30.0, lambda _line: None, others=_serving(paid, *paid.spec.names))
    o = paid.owner
    assert o.model_path is not None and o.model_path.read_bytes()[:2] == b"PK"  # an npz: no pickle inside
    x = paid.setup.xs[o.name]
    model = load_owner_model(o.model_path, o.ident, o.name, x.shape[1], paid.spec.names, paid.spec.model)
    restarted = {
        n: PartyNode(
            paid.spec,
            n,
            paid.setup.data[n],
            paid.setup.xs[n],
            serve=True,
            account=node.account,
            task=node.task,
            store=node.store,
            key=node.key,
            from_block=paid.setup.block,
            model_path=node.model_path,
        )
        for n, node in paid.parties.items()
    }
    for node in restarted.values():  # what a restarted daemon does: it skips the requests already answered
        node.step()
    from_disk = _scorer(paid, rows, model).run(30.0, lambda _line: None, others=[n.step for n in restarted.values()])
    # The same parameters (an npz round-trips float32 exactly), but torch's kernels may round the last bit
    # differently for tensors laid out differently in memory (seen on one CPU, not another): equal to 1e-6.
    assert from_disk.answered == in_memory.answered
    assert np.allclose(from_disk.logits, in_memory.logits, rtol=1e-6, atol=1e-6)
    # a model file of another task, or no model file at all, is refused in one line
    other = dict(o.ident, contract="0x" + "11" * 20)
    save_model(tmp_path / "other.npz", other, o.name, model.top.net, model.fallback, model.active)
    for path, message in ((tmp_path / "other.npz", "another task"), (tmp_path / "none.npz", "no trained model")):
        with pytest.raises(NodeError, match=message):
            load_owner_model(path, o.ident, o.name, x.shape[1], paid.spec.names, paid.spec.model)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(NodeError, match="not a fedchain vertical model"):
        load_owner_model(tmp_path / "bad.npz", o.ident, o.name, x.shape[1], paid.spec.names, paid.spec.model)
