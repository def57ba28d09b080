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
from node.horizontal.state import PeerState
from node.horizontal.verify import verify_round
from node.privacy.envelope import EnvelopeError, Place, seal_envelope
from node.privacy.seal import SealKey
from node.privacy.sealing import Sealer, auditor_address, member_seal_key
from tests.e2e.embedded_peers import WINDOW, Federation, embedded_federation, kinds

AUDITOR = SealKey.generate()


def sealed_federation(csv: Path, root: Path, n: int) -> Federation:
    f = embedded_federation(csv, root, n, sealed=True, auditors=("0x" + AUDITOR.public.hex(),))
    assert f.nspec.sealing is not None and f.nspec.sealing.auditors == (AUDITOR.public,)
    return f


def run_round(f: Federation, r: int, late: int = 0) -> list[StepEvent]:
    """Step until round r closes (finalized); every peer adopts its model (the `late` last peers only if they
    can yet: one that joined during the round learns the model's key from the next round's updates)."""
    events: list[StepEvent] = []
    while not f.fed.round(r).phase.closed and len(events) < 200:
        steps = f.step_all()
        events += steps
        if all(e.kind in ("idle", "model-unavailable") for e in steps):  # waiting: a peer sitting out
            f.chain.advance_time(WINDOW // 2 + 1)
    assert f.fed.round(r).phase == Phase.FINALIZED, kinds(events)
    for i, p in enumerate(f.peers):
        try:
            p.adopt_latest()
        except NodeError:
            if i < len(f.peers) - late:
                raise
    first = f.peers[0].params
    holders = [p for p in f.peers if p.loaded_round == r]
    assert len(holders) >= len(f.peers) - late
    assert all(all(np.array_equal(p.params[k], first[k]) for k in first) for p in holders)
    return events


def member_reader(f: Federation, i: int) -> Sealer:
    """Member `i` as a fresh process (`audit verify --keystore`) would read: its key from its account key."""
    assert f.nspec.sealing is not None
    key = member_seal_key(bytes(f.accounts[i].key), f.chain.chain_id, f.fed.address)
    return Sealer(f.fed, f.accounts[i].address, key, f.nspec.sealing)


def test_members_and_auditors_read_outsiders_learn_sizes_only(sample_csv: Path, tmp_path: Path) -> None:
    f = sealed_federation(sample_csv, tmp_path, 3)
    events = run_round(f, 1) + run_round(f, 2)
    assert sum(e.kind == "key-registered" for e in events) == 3
    assert {m: v[2] for m, v in f.fed.encryption_keys().items()} == {p.address: True for p in f.peers}

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
                outsider.update_opener(rv.member, r, {})(data)
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
    for reader in (member_reader(f, 1), auditor):
        for r in (2, 1):
            verdict = verify_round(f.fed, f.store, f.nspec, r, f.block, reader)
            assert verdict.ok, verdict.lines
    # A restarted peer (fresh object, state file kept) still reads: it re-runs round 2 from the sealed data.
    again = f.restart(0)
    assert again.state.model_keys and again.sealer is not None and again.sealer.knows(2)


def test_a_member_who_left_reads_nothing_after_it_left(sample_csv: Path, tmp_path: Path) -> None:
    f = sealed_federation(sample_csv, tmp_path, 4)
    leaver = f.peers[3]
    leaver.last_round = 1
    run_round(f, 1)
    f.fed.leave(leaver.account)  # it committed to no round after round 1, which is closed
    f.peers = f.peers[:3]
    run_round(f, 2)
    reader = member_reader(f, 3)
    for rv in f.fed.reveals([2], f.block):
        with pytest.raises(EnvelopeError, match="not a recipient"):
            reader.update_opener(rv.member, 2, {})(f.store.get(rv.cid, 1 << 22))
    info = f.fed.round(2)
    with pytest.raises(EnvelopeError, match="no key"):
        reader.model_opener(2, info.model_hash)(f.store.get(info.model_cid, 1 << 22))
    assert not verify_round(f.fed, f.store, f.nspec, 2, f.block, reader).ok
    # It still reads the round it took part in.
    assert verify_round(f.fed, f.store, f.nspec, 1, f.block, reader).ok


def _tampered(how: str) -> object:
    """A member's `seal_update` that seals what a reader must refuse (`how`)."""

    def seal(self: Sealer, content: bytes, r: int, base_round: int, before: int = 0) -> bytes:
        honest = Sealer.seal_update(self, content, r, base_round, before)
        if how == "flipped":
            return honest[:-40] + bytes([honest[-40] ^ 1]) + honest[-39:]
        if how == "other-round":  # associated data for round r + 1
            return Sealer.seal_update(self, content, r + 1, base_round, before)
        # wraps for keys that are not the recipients' (same addresses)
        wrong = {a: SealKey.generate().public for a in self.recipients()}
        return seal_envelope(b"\x00" * 80 + content, wrong, Place(self.chain_id, self.contract, self.me, r))[0]

    return seal


WHY = {
    "flipped": "does not open (changed",
    "other-round": "our wrap does not open",
    "wrong-keys": "our wrap does not open",
}


@pytest.mark.parametrize("how", sorted(WHY))
def test_a_tampered_sealed_update_is_malformed_and_the_round_goes_on(
    sample_csv: Path, tmp_path: Path, how: str
) -> None:
    f = sealed_federation(sample_csv, tmp_path, 3)
    cheat = f.peers[2]
    assert cheat.sealer is not None
    cheat.sealer.seal_update = _tampered(how).__get__(cheat.sealer)  # type: ignore[attr-defined,method-assign]
    run_round(f, 1)
    for i in (0, 1):  # each honest peer rejected the cheat's update as malformed, and only that
        rejected = [e for e in f.sink(i) if e.kind == "rejected"]
        assert [e.details["member"] for e in rejected] == [cheat.address]
        assert rejected[0].details["reason"].startswith("malformed: "), rejected[0].details
        assert WHY[how] in rejected[0].details["reason"]
    assert f.fed.round(1).phase == Phase.FINALIZED


def test_a_member_who_joins_later_learns_the_model_keys_and_takes_part(sample_csv: Path, tmp_path: Path) -> None:
    """A member (re)admitted mid-federation with no memory of it: it registers its key, learns the keys of the
    models it missed from the updates sealed to it (or re-runs a round sealed to it), and commits again within
    two rounds of joining; every peer holds the same model."""
    f = sealed_federation(sample_csv, tmp_path, 4)
    newcomer = f.peers[3]
    newcomer.last_round = 1
    run_round(f, 1)
    f.fed.leave(newcomer.account)
    f.peers = f.peers[:3]
    run_round(f, 2)
    for p in f.peers[:2]:  # a majority of the 3 members admits it again
        f.fed.approve_member(p.account, newcomer.address)
    f.fed.join(newcomer.account)
    joined = f.fed.member(newcomer.address).joined_round
    f.state_path(3).unlink()
    f.peers.append(newcomer)
    fresh = f.restart(3, PeerState(f.state_path(3)))  # a new process, no state: it knows no model key
    fresh.last_round = None
    last = joined + 3
    for r in range(joined, last + 1):
        run_round(f, r, late=1)
    assert fresh.loaded_round == last  # it holds the latest model, the same as everyone's
    committed = [r for r in range(joined, last + 1) if fresh.address in f.fed.committers(r, f.block)]
    # From its first or second eligible round on (it sits one out if it joined after that round's reveals began).
    assert committed and committed[0] <= joined + 2 and committed == list(range(committed[0], last + 1)), committed
    assert f.fed.round(last).reveals == 4  # and its update was read by everyone (no rejection)
    assert not [e for e in f.sink(0) if e.kind == "rejected"]
    assert f.fed.encryption_keys()[fresh.address][2]  # its key from before it left, sealed to again


def _targeting(victims: list[str]) -> object:
    """A `seal_update` that gives `victims` (addresses) wraps that do not open in round 1: sealed to other keys."""
    hit = set(victims)

    def targeted(self: Sealer, content: bytes, r: int, base_round: int, before: int = 0) -> bytes:
        if r != 1:
            return Sealer.seal_update(self, content, r, base_round, before)
        keys = {a: (SealKey.generate().public if a in hit else k) for a, k in self.recipients(r).items()}
        return seal_envelope(bytes(80) + content, keys, Place(self.chain_id, self.contract, self.me, r))[0]

    return targeted


def _votes(f: Federation, r: int) -> dict[str, bytes]:
    return {e["args"]["member"]: e["args"]["proposal"] for e in f.fed.events("Voted") if e["args"]["round"] == r}


@pytest.mark.parametrize("victims", ["one", "more-than-a-third", "the-auditor"])
def test_a_sender_that_gives_members_wraps_they_cannot_open_is_left_out_by_everyone(
    sample_csv: Path, tmp_path: Path, victims: str
) -> None:
    """A sender seals round 1 so that one member's wrap, more than a third of the revealers' (which would split
    the vote if only they left the update out), or the auditor's does not open. Every other reader makes each
    required wrap again from the envelope's key and finds the bad ones, so every member leaves the update out:
    all vote for the same model, in this round and the next, and the auditor verifies the round."""
    f = sealed_federation(sample_csv, tmp_path, 4)
    cheat = f.peers[3]
    hit = {
        "one": [f.peers[0].address],
        "more-than-a-third": [f.peers[0].address, f.peers[1].address],
        "the-auditor": [auditor_address(AUDITOR.public)],
    }[victims]
    assert cheat.sealer is not None
    cheat.sealer.seal_update = _targeting(hit).__get__(cheat.sealer)  # type: ignore[attr-defined,method-assign]
    run_round(f, 1)
    assert set(_votes(f, 1).values()) == {f.fed.round(1).winner} and len(_votes(f, 1)) == 4
    for i in range(3):
        rejected = [e for e in f.sink(i) if e.kind == "rejected"]
        assert [e.details["member"] for e in rejected] == [cheat.address], i
        reason = rejected[0].details["reason"]
        assert "our wrap does not open" in reason if f.peers[i].address in hit else "not wrapped for" in reason, reason
    auditor = Sealer(f.fed, auditor_address(AUDITOR.public), AUDITOR, f.nspec.sealing)  # type: ignore[arg-type]
    verdict = verify_round(f.fed, f.store, f.nspec, 1, f.block, auditor)
    assert verdict.ok, verdict.lines
    run_round(f, 2)
    assert set(_votes(f, 2).values()) == {f.fed.round(2).winner} and len(_votes(f, 2)) == 4
    assert f.fed.round(2).reveals == 4
    assert not [e for e in f.fed.events("Slashed") if e["args"]["member"] != cheat.address]


def test_a_committer_who_leaves_is_still_required_of_its_rounds_updates(sample_csv: Path, tmp_path: Path) -> None:
    """A sender leaves a committer out of its envelope: every peer rejects the update. That committer then
    leaves the federation; a reader who re-runs the round afterwards (an auditor) still requires its wrap, so
    it rejects the update too and the round verifies: what is required is fixed by the chain's history."""
    f = sealed_federation(sample_csv, tmp_path, 4)
    left_out, cheat = f.peers[2], f.peers[3]
    left_out.last_round = 1
    assert cheat.sealer is not None

    def without(self: Sealer, content: bytes, r: int, base_round: int, before: int = 0) -> bytes:
        keys = {a: k for a, k in self.recipients(r).items() if a != left_out.address}
        return seal_envelope(bytes(80) + content, keys, Place(self.chain_id, self.contract, self.me, r))[0]

    cheat.sealer.seal_update = without.__get__(cheat.sealer)  # type: ignore[method-assign]
    run_round(f, 1)
    reasons = [e.details["reason"] for e in f.sink(0) if e.kind == "rejected"]
    assert len(reasons) == 1 and f"not sealed to {left_out.address}" in reasons[0]
    f.fed.leave(left_out.account)
    assert f.fed.encryption_keys()[left_out.address][2] is False
    auditor = Sealer(f.fed, auditor_address(AUDITOR.public), AUDITOR, f.nspec.sealing)  # type: ignore[arg-type]
    verdict = verify_round(f.fed, f.store, f.nspec, 1, f.block, auditor)
    assert verdict.ok, verdict.lines
    assert any(line.startswith(f"update {cheat.address}") and "rejected" in line for line in verdict.lines)
