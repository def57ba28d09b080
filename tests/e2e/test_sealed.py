"""Sealed updates in a running federation (embedded chain and store): only the members of a round and the
spec's auditors can read its updates and models; an outsider holding every CID learns sizes only; a member
who left reads nothing after it left; a sealed update that was tampered with, sealed for another round or
wrapped for the wrong key is a malformed update (the round goes on without it); the peers' models stay
bit-identical, and `audit verify` works for a member or an auditor and says why it cannot for anyone else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from ledger.types import Phase
from node.core.codec import content_hash, decode
from node.errors import NodeError
from node.events import StepEvent
from node.horizontal.verify import verify_round
from node.privacy.envelope import EnvelopeError, Place, seal_envelope
from node.privacy.seal import SealKey
from node.privacy.sealing import Sealer, auditor_address, member_seal_key
from tests.e2e.embedded_peers import Federation, embedded_federation, kinds

AUDITOR = SealKey.generate()


def _sealed(csv: Path, root: Path, n: int) -> Federation:
    f = embedded_federation(csv, root, n, sealed=True, auditors=("0x" + AUDITOR.public.hex(),))
    assert f.nspec.sealing is not None and f.nspec.sealing.auditors == (AUDITOR.public,)
    return f


def _round(f: Federation, r: int) -> list[StepEvent]:
    events = f.step_until(lambda: f.fed.round(r).phase.closed)
    assert f.fed.round(r).phase == Phase.FINALIZED, kinds(events)
    for p in f.peers:
        p.adopt_latest()
    first = f.peers[0].params
    assert all(all(np.array_equal(p.params[k], first[k]) for k in first) for p in f.peers)
    return events


def _member_reader(f: Federation, i: int) -> Sealer:
    """Member `i` as a fresh process (`audit verify --keystore`) would read: its key from its account key."""
    assert f.nspec.sealing is not None
    key = member_seal_key(bytes(f.accounts[i].key), f.chain.chain_id, f.fed.address)
    return Sealer(f.fed, f.accounts[i].address, key, f.nspec.sealing)


def test_members_and_auditors_read_outsiders_learn_sizes_only(sample_csv: Path, tmp_path: Path) -> None:
    f = _sealed(sample_csv, tmp_path, 3)
    events = _round(f, 1) + _round(f, 2)
    assert sum(e.kind == "key-registered" for e in events) == 3
    assert set(f.fed.encryption_keys()) == {p.address for p in f.peers}

    # An outsider with every CID (updates and models) and the store: bytes that hash to nothing on chain,
    # decode to nothing, and do not open for a key that is not a recipient's.
    outsider = Sealer(f.fed, Account.create().address, SealKey.generate(), f.nspec.sealing)  # type: ignore[arg-type]
    for r in (1, 2):
        for rv in f.fed.reveals([r], f.block):
            data = f.store.get(rv.cid, 1 << 22)
            assert content_hash(data) != rv.content_hash
            with pytest.raises(NodeError):
                decode(data, f.nspec.layout, canonical=True)
            with pytest.raises(EnvelopeError, match="not a recipient"):
                outsider.update_opener(rv.member, r, [])(data)
        info = f.fed.round(r)
        model = f.store.get(info.model_cid, 1 << 22)
        assert content_hash(model) != info.model_hash
        with pytest.raises(EnvelopeError, match="no key this reader holds"):
            outsider.model_opener(r, info.model_hash)(model)

    # `audit verify`: refused without a key (and says why), passes for a member and for an auditor that
    # holds no model key beforehand (it learns each from the updates trained on it).
    bare = verify_round(f.fed, f.store, f.nspec, 2, f.block)
    assert not bare.ok and "sealed to its members and the spec's auditors" in bare.lines[-1]
    auditor = Sealer(f.fed, auditor_address(AUDITOR.public), AUDITOR, f.nspec.sealing)  # type: ignore[arg-type]
    for reader in (_member_reader(f, 1), auditor):
        for r in (2, 1):
            verdict = verify_round(f.fed, f.store, f.nspec, r, f.block, reader)
            assert verdict.ok, verdict.lines
    # A restarted peer (fresh object, state file kept) still reads: it re-runs round 2 from the sealed data.
    again = f.restart(0)
    assert again.state.model_keys and again.sealer is not None and again.sealer.knows(2)


def test_a_member_who_left_reads_nothing_after_it_left(sample_csv: Path, tmp_path: Path) -> None:
    f = _sealed(sample_csv, tmp_path, 4)
    leaver = f.peers[3]
    leaver.last_round = 1
    _round(f, 1)
    f.fed.leave(leaver.account)  # it committed to no round after round 1, which is closed
    f.peers = f.peers[:3]
    _round(f, 2)
    reader = _member_reader(f, 3)
    for rv in f.fed.reveals([2], f.block):
        with pytest.raises(EnvelopeError, match="not a recipient"):
            reader.update_opener(rv.member, 2, [])(f.store.get(rv.cid, 1 << 22))
    info = f.fed.round(2)
    with pytest.raises(EnvelopeError, match="no key"):
        reader.model_opener(2, info.model_hash)(f.store.get(info.model_cid, 1 << 22))
    assert not verify_round(f.fed, f.store, f.nspec, 2, f.block, reader).ok
    # It still reads the round it took part in.
    assert verify_round(f.fed, f.store, f.nspec, 1, f.block, reader).ok


def _tampered(how: str) -> object:
    """A member's `seal_update` that seals what a reader must refuse (`how`)."""

    def seal(self: Sealer, content: bytes, r: int, base_round: int) -> bytes:
        honest = Sealer.seal_update(self, content, r, base_round)
        if how == "flipped":
            return honest[:-40] + bytes([honest[-40] ^ 1]) + honest[-39:]
        if how == "other-round":  # associated data for round r + 1
            return Sealer.seal_update(self, content, r + 1, base_round)
        # wraps for keys that are not the recipients' (same addresses)
        wrong = {a: SealKey.generate().public for a in self.recipients()}
        return seal_envelope(b"\x00" * 40 + content, wrong, Place(self.chain_id, self.contract, self.me, r))[0]

    return seal


WHY = {
    "flipped": "does not open (changed",
    "other-round": "our key does not open",
    "wrong-keys": "our key does not open",
}


@pytest.mark.parametrize("how", sorted(WHY))
def test_a_tampered_sealed_update_is_malformed_and_the_round_goes_on(
    sample_csv: Path, tmp_path: Path, how: str
) -> None:
    f = _sealed(sample_csv, tmp_path, 3)
    cheat = f.peers[2]
    assert cheat.sealer is not None
    cheat.sealer.seal_update = _tampered(how).__get__(cheat.sealer)  # type: ignore[attr-defined,method-assign]
    _round(f, 1)
    for i in (0, 1):  # each honest peer rejected the cheat's update as malformed, and only that
        rejected = [e for e in f.sink(i) if e.kind == "rejected"]
        assert [e.details["member"] for e in rejected] == [cheat.address]
        assert rejected[0].details["reason"].startswith("malformed: "), rejected[0].details
        assert WHY[how] in rejected[0].details["reason"]
    assert f.fed.round(1).phase == Phase.FINALIZED
