"""`verify_round` (what `fedchain audit verify` runs): every way a round can fail to verify, and the happy path.

Two rounds are played once on the embedded chain and store (four peers; the
last one copies the last global step in round 2). Each test then loses or
tampers with one file of the store (blobs are files named by their CID) and
puts it back afterwards.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger.types import Phase
from node.core.codec import IntArray, content_hash, encode
from node.horizontal.peer import Peer
from node.horizontal.verify import Verdict, verify_round
from node.sim.demo import play_round
from tests.e2e.embedded_peers import WINDOW, Federation, embedded_federation, kinds

COPIER = 3  # the peer that copies the last global step in round 2


@pytest.fixture(scope="module")
def played(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """Rounds 1 and 2 finalized, round 3 open (commit phase)."""
    f = embedded_federation(sample_csv, tmp_path_factory.mktemp("verify"), 4)
    bases: dict[int, dict[str, IntArray]] = {}

    def copy_last_step(peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        bases[r] = base
        if r == 1:
            return peer.trained_update(r, base)
        return {k: base[k] - bases[r - 1][k] for k in base}  # public: the change round r - 1 made

    f.peers[COPIER].make_update = copy_last_step
    for p in f.peers:
        p.last_round = 2  # round 2's votes go alone: round 3 stays untouched
    for r in (1, 2):
        play_round(f.fed, f.peers, r, f.chain)
        assert f.fed.round(r).phase == Phase.FINALIZED
    assert f.fed.current_round() == 3 and f.fed.phase(3) == Phase.COMMIT
    return f


def verify(f: Federation, r: int) -> Verdict:
    verdict = verify_round(f.fed, f.store, f.nspec, r, f.block)
    assert verdict.round == r
    return verdict


def mismatches(verdict: Verdict) -> list[str]:
    return [line.removeprefix("MISMATCH: ") for line in verdict.lines if line.startswith("MISMATCH: ")]


def revealed(f: Federation, r: int) -> dict[str, tuple[bytes, str]]:
    """Round r's revealed updates: member -> (content hash, CID)."""
    return {rv.member: (rv.content_hash, rv.cid) for rv in f.fed.reveals([r], f.block)}


@contextmanager
def lost(path: Path) -> Iterator[None]:
    """`path` is gone from the store for the duration."""
    keep = path.with_name(path.name + ".kept")
    shutil.move(path, keep)
    try:
        yield
    finally:
        shutil.move(keep, path)


@contextmanager
def replaced(path: Path, data: bytes) -> Iterator[None]:
    """`path` holds `data` for the duration."""
    original = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)


def test_happy_path_every_update_ok_and_the_model_and_scores_match(played: Federation) -> None:
    f = played
    info = f.fed.round(1)
    verdict = verify(f, 1)
    assert verdict.ok, verdict.lines
    assert mismatches(verdict) == []
    updates = revealed(f, 1)
    expected = [
        f"update {m} {h.hex()[:16]} {cid}: ok" for m, (h, cid) in sorted(updates.items(), key=lambda t: t[0].lower())
    ]
    assert verdict.lines == [
        *expected,
        f"model hash 0x{info.model_hash.hex()} matches the chain",
        "scores match the finalized proposal",
    ]


def test_a_copy_of_the_last_global_step_is_reported_rejected_and_the_round_verifies(played: Federation) -> None:
    f = played
    copier = f.peers[COPIER].address
    verdict = verify(f, 2)
    assert verdict.ok, verdict.lines
    h, cid = revealed(f, 2)[copier]
    assert f"update {copier} {h.hex()[:16]} {cid}: rejected (copies the last global step)" in verdict.lines
    assert f"update {copier} {h.hex()[:16]} {cid}: ok" not in verdict.lines
    assert sum(line.endswith(": ok") for line in verdict.lines) == 3
    assert f"model hash 0x{f.fed.round(2).model_hash.hex()} matches the chain" in verdict.lines
    # the quorum paid it nothing, and paid every honest peer
    scores = f.fed.winning_proposal(2, f.block).scores
    assert f.fed.members() == [p.address for p in f.peers]
    assert scores[COPIER] == 0 and all(s > 0 for i, s in enumerate(scores) if i != COPIER)


def test_a_round_not_finalized_does_not_verify(played: Federation) -> None:
    verdict = verify(played, 3)
    assert not verdict.ok
    assert verdict.lines == ["MISMATCH: round 3 is commit, not finalized"]
    never = verify(played, 9)  # a round that never opened
    assert not never.ok and never.lines == ["MISMATCH: round 9 is none, not finalized"]


def test_an_update_lost_from_the_store_cannot_be_refetched(played: Federation) -> None:
    f = played
    member, (h, cid) = sorted(revealed(f, 1).items())[0]
    with lost(f.store.root / cid):
        verdict = verify(f, 1)
    assert not verdict.ok
    found = mismatches(verdict)
    assert found[0] == f"cannot refetch {member}'s update {cid}, so the round cannot be re-run"
    assert any(
        line.startswith(f"update {member} {h.hex()[:16]} {cid}: rejected (unavailable: ") for line in verdict.lines
    )
    assert any(m.startswith("re-aggregated model hash") for m in found)  # three updates do not give the model
    assert verify(f, 1).ok  # back in place: verifies again


def test_no_update_left_means_the_round_cannot_be_re_run(played: Federation) -> None:
    f = played
    updates = revealed(f, 1)
    paths = [f.store.root / cid for _, cid in updates.values()]
    for p in paths:
        shutil.move(p, p.with_name(p.name + ".kept"))
    try:
        verdict = verify(f, 1)
    finally:
        for p in paths:
            shutil.move(p.with_name(p.name + ".kept"), p)
    assert not verdict.ok
    found = mismatches(verdict)
    assert len(found) == 5
    assert [m.startswith("cannot refetch") for m in found] == [True] * 4 + [False]
    assert found[-1] == "no update of the round could be used"


def test_the_finalized_model_lost_from_the_store_cannot_be_fetched(played: Federation) -> None:
    f = played
    info = f.fed.round(1)
    with lost(f.store.root / info.model_cid):
        verdict = verify(f, 1)
        # round 2 is re-run from round 1's model: without it there is nothing to re-run from
        second = verify(f, 2)
    assert len(mismatches(second)) == 1 and mismatches(second)[0].startswith(
        f"cannot re-run round 2: cannot fetch round 1's model {info.model_cid}"
    )
    assert not verdict.ok
    found = mismatches(verdict)
    assert len(found) == 1 and found[0].startswith(f"the finalized model {info.model_cid} cannot be fetched: ")
    # the re-run itself still matches: only the stored copy is missing
    assert f"model hash 0x{info.model_hash.hex()} matches the chain" in verdict.lines


def test_a_tampered_finalized_model_does_not_hash(played: Federation) -> None:
    f = played
    info = f.fed.round(1)
    path = f.store.root / info.model_cid
    other = encode(f.nspec.initial_model())  # well-formed, same size, another model
    assert len(other) == path.stat().st_size and content_hash(other) != info.model_hash
    for data in (other, bytes(len(other))):
        with replaced(path, data):
            verdict = verify(f, 1)
        assert not verdict.ok
        assert mismatches(verdict) == [f"the model stored at {info.model_cid} does not hash to the on-chain model hash"]
    with replaced(path, other):  # round 2 cannot be re-run from it: one mismatch that says why
        found = mismatches(verify(f, 2))
    assert len(found) == 1 and found[0].startswith("cannot re-run round 2: ") and "on-chain hash" in found[0]


def test_another_aggregation_rule_re_aggregates_to_another_model(played: Federation) -> None:
    f = played
    info = f.fed.round(1)
    wrong = dataclasses.replace(played.nspec, rule="median")
    verdict = verify_round(f.fed, f.store, wrong, 1, f.block)
    assert not verdict.ok
    found = mismatches(verdict)
    assert len(found) == 1
    assert found[0].startswith("re-aggregated model hash 0x") and found[0].endswith(
        f" != on-chain 0x{info.model_hash.hex()}"
    )
    assert "scores match the finalized proposal" in verdict.lines  # scores do not depend on the rule


def test_a_quorum_that_voted_for_wrong_scores_or_a_malformed_model_is_caught(sample_csv: Path, tmp_path: Path) -> None:
    """Three colluding voters out of four can finalize anything; verify_round says what is wrong."""
    f = embedded_federation(sample_csv, tmp_path, 4)
    fed, chain = f.fed, f.chain
    voters = [p.account for p in f.peers[1:]]

    # round 1: the honest model, but every score moved to one member
    assert kinds(f.step_all()) == ["committed"] * 4
    assert kinds(f.step_all()) == ["revealed"] * 4
    assert f.peers[0].step().kind == "committed"  # round 2's commit carries its vote on round 1
    (honest,) = [e for e in f.sink(0) if e.kind == "voted"]
    forged = [sum(honest.details["scores"]), 0, 0, 0]
    model = bytes.fromhex(honest.details["model_hash"])
    for a in voters:
        fed.vote(a, 1, model, honest.details["model_cid"], forged)
    fed.finalize(voters[0], 1, from_block=f.block)
    assert fed.round(1).phase == Phase.FINALIZED
    verdict = verify(f, 1)
    assert not verdict.ok
    assert mismatches(verdict) == [f"recomputed scores {honest.details['scores']} != finalized {forged}"]
    assert f"model hash 0x{model.hex()} matches the chain" in verdict.lines

    # round 2: a model that is not a model at all
    assert kinds(f.step_all()) == ["idle", "committed", "committed", "committed"]  # peer 0 committed with its vote
    assert kinds(f.step_all()) == ["revealed"] * 4
    junk = b"not a model, but it hashes to what the quorum voted for"
    junk_cid = f.store.put(junk)
    for a in voters:
        fed.vote(a, 2, content_hash(junk), junk_cid, [1, 1, 1, 1])
    chain.advance_time(WINDOW + 1)  # peer 0 never votes: the round closes at the vote deadline
    fed.finalize(voters[0], 2, from_block=f.block)  # round 3, opened on round 2's vote, failed meanwhile
    assert fed.round(2).phase == Phase.FINALIZED
    verdict = verify(f, 2)
    assert not verdict.ok
    found = mismatches(verdict)
    assert found[0].startswith("re-aggregated model hash") and found[0].endswith(content_hash(junk).hex())
    assert found[1].startswith("recomputed scores") and found[1].endswith("!= finalized [1, 1, 1, 1]")
    assert found[2].startswith(f"the model stored at {junk_cid} is malformed: ")
    assert len(found) == 3

    # round 3: nobody committed within its window, so it failed; round 4 is open
    assert fed.phase(3) == Phase.FAILED and fed.current_round() == 4
    verdict = verify(f, 3)
    assert not verdict.ok and verdict.lines == ["MISMATCH: round 3 is failed, not finalized"]
    verdict = verify(f, 4)
    assert not verdict.ok and verdict.lines == ["MISMATCH: round 4 is commit, not finalized"]


def test_an_update_the_voters_could_not_fetch_is_left_out_as_they_saw_it_though_it_is_back(
    sample_csv: Path, tmp_path: Path
) -> None:
    """Its sender was partitioned, or its node down, while the round voted: the voters left it out. Fetched
    now, it must not make the round look tampered with; verify finds the update they could not have and
    says so. Anything else still fails (the other tests: a model that no subset of updates gives)."""
    f = embedded_federation(sample_csv, tmp_path, 4)
    late = f.peers[3]
    while f.fed.phase(1) != Phase.VOTE:  # everyone commits and reveals; the last reveal opens the vote
        for p in f.peers:
            p.step()
            if f.fed.phase(1) == Phase.VOTE:
                break
    cid = revealed(f, 1)[late.address][1]
    with lost(f.store.root / cid):  # gone while the others vote: they leave it out
        play_round(f.fed, f.peers, 1, f.chain)
    info = f.fed.round(1)
    assert info.phase == Phase.FINALIZED and info.votes >= 3
    verdict = verify(f, 1)
    assert verdict.ok, verdict.lines
    assert verdict.left_out == [late.address], verdict.lines
    assert any(line.startswith("LEFT OUT:") and late.address in line for line in verdict.lines), verdict.lines
    assert any(late.address in line and "rejected (left out" in line for line in verdict.lines), verdict.lines
