"""Attack (2) of the review, with real peers: a short garbage CID must not stall honest peers.

Before the fix, whoever voted first for the honest (model, scores) set the CID every
later voter endorsed; a garbage CID then finalized, honest peers could not fetch the
model they had to adopt, and every later round failed. The CID is now bound into the
proposal, so honest peers endorse the CID they published; a peer that still cannot get
a finalized model sits the round out and the federation goes on.
"""

from __future__ import annotations

from pathlib import Path

from ledger.types import Phase
from tests.e2e.embedded_peers import WINDOW, Federation, embedded_federation, kinds


def closed(f: Federation, r: int) -> bool:
    return f.fed.round(r).phase.closed


def test_a_garbage_cid_voted_first_does_not_finalize_or_stall_anyone(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 4)
    fed, attacker, honest = f.fed, f.peers[0], f.peers[1:]
    assert kinds(f.step_all()) == ["committed"] * 4
    assert kinds(f.step_all()) == ["revealed"] * 4
    assert honest[0].step().kind == "committed"  # its vote on round 1 rides in its round 2 commit ...
    (first,) = [e for e in f.sink(1) if e.kind == "voted"]  # ... and the honest result is public data
    model, scores = bytes.fromhex(first.details["model_hash"]), first.details["scores"]
    garbage = "b" + "q" * 58
    fed.vote(attacker.account, 1, model, garbage, scores)  # ... and attach a CID nobody can fetch
    assert kinds(f.step_all(honest[1:])) == ["committed", "committed"]
    f.step_until(lambda: closed(f, 1))
    info = fed.round(1)
    assert info.phase == Phase.FINALIZED and info.model_cid == first.details["model_cid"] != garbage
    f.step_until(lambda: closed(f, 3))  # and the rounds after go on
    assert [fed.round(r).phase for r in (2, 3)] == [Phase.FINALIZED, Phase.FINALIZED]


def test_a_peer_that_cannot_get_the_agreed_model_sits_out_and_the_round_goes_on(
    sample_csv: Path, tmp_path: Path
) -> None:
    f = embedded_federation(sample_csv, tmp_path, 4)
    fed, chain = f.fed, f.chain
    late = f.peers[3]
    f.step_all()
    f.step_all()
    f.step_until(lambda: fed.round(1).votes == 3, limit=3)  # three vote (in their round 2 commits); the fourth not
    assert kinds(f.step_all(f.peers[:3])) == ["idle"] * 3  # round 1 waits for the fourth vote, round 2 for its commit
    chain.advance_time(WINDOW + 1)  # the vote deadline: 3 of 4 voted, a quorum of the votes cast
    f.step_until(lambda: closed(f, 1), limit=10)  # the first round 2 reveal finalizes round 1
    info = fed.round(1)
    assert info.phase == Phase.FINALIZED
    (f.store.root / info.model_cid).unlink()  # nobody serves the model any more
    event = late.step()  # it never computed the model, and cannot fetch it
    assert (event.kind, event.round, event.details["model_round"]) == ("model-unavailable", 2, 1)
    assert late.loaded_round == 0
    # the others hold the model already and go on without it
    f.step_until(lambda: fed.round(2).votes == 3, limit=20)
    chain.advance_time(WINDOW + 1)  # its round 3 commit never comes: the commit window passes
    f.step_until(lambda: closed(f, 2), limit=20)
    assert fed.round(2).phase == Phase.FINALIZED and fed.round(2).reveals == 3
