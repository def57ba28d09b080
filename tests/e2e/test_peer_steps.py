"""`Peer.step()`'s decision table on the embedded chain and store, with real peers stepped one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ledger.audit import read_audit
from ledger.spec import TOKEN_UNIT
from ledger.types import MemberStatus, Phase
from node.core.codec import MAX_ABS, IntArray, content_hash, decode, encode
from node.events import StepEvent
from node.horizontal.peer import Peer
from node.horizontal.spec import model_hash
from node.horizontal.state import PeerState
from node.sim.demo import play_round
from node.store import Store, raw_cid
from tests.e2e.embedded_peers import WINDOW, embedded_federation, kinds

STAKE = 100 * TOKEN_UNIT  # the spec's default stake
SLASH = STAKE // 2  # and its default slash, 50%


def assert_timings(event: StepEvent, *keys: str) -> None:
    assert event.timings, event
    assert set(keys) <= set(event.timings), event.timings
    assert all(v >= 0.0 for v in event.timings.values())


def test_one_round_step_by_step(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 4)
    fed, (p0, p1, p2, p3) = f.fed, f.peers

    # commit phase: train, keep the update (unpublished), commit; then nothing more to do in this phase
    committed = p0.step()
    assert (committed.kind, committed.round) == ("committed", 1)
    assert set(committed.details) == {"hash", "bytes"}
    kept = p0.state.update(1)
    assert kept is not None and committed.details["hash"] == content_hash(kept).hex()
    assert committed.details["bytes"] == len(kept) == f.nspec.max_update_bytes
    assert not (f.store.root / raw_cid(kept)).exists()  # nobody can fetch it before every commit is in
    decode(kept, f.nspec.layout)  # a well-formed update of the model's layout
    assert_timings(committed, "train", "encode", "chain")
    saved = json.loads(f.state_path(0).read_text())["commits"]["1"]  # saved before the commit was sent
    assert saved["hash"] == committed.details["hash"] and "cid" not in saved
    assert fed.status(1, p0.address) == MemberStatus.COMMITTED

    again = p0.step()
    assert (again.kind, again.round, bool(again)) == ("idle", 1, False)
    assert fed.round(1).commits == 1

    assert kinds(f.step_all([p1, p2, p3])) == ["committed"] * 3
    assert fed.round(1).phase == Phase.REVEAL  # every eligible member committed: no need to wait

    revealed = p0.step()
    assert (revealed.kind, revealed.round) == ("revealed", 1)
    blob = (f.store.root / revealed.details["cid"]).read_bytes()  # published now, in the reveal phase
    assert revealed.details == {"hash": committed.details["hash"], "cid": raw_cid(blob)} and blob == kept
    assert json.loads(f.state_path(0).read_text())["commits"]["1"]["cid"] == raw_cid(blob)
    assert_timings(revealed, "publish", "chain")
    assert p0.step().kind == "idle"
    assert kinds(f.step_all([p1, p2, p3])) == ["revealed"] * 3
    # every reveal is in: round 1 is in its vote and round 2 opens on round 1's (pending) model
    assert fed.round(1).phase == Phase.VOTE and fed.current_round() == 2 and fed.round(2).chained

    # each peer aggregates round 1, trains round 2 on the result, and commits with its vote inside
    steps = f.step_all([p0, p1])
    assert kinds(steps) == ["committed"] * 2 and all(e.round == 2 for e in steps)
    assert not fed.can_finalize(1)  # 2 of 4 votes: below the 2/3 quorum
    steps.append(p2.step())
    votes = [e for i in range(3) for e in f.sink(i) if e.kind == "voted"]
    assert len(votes) == 3
    for v in votes:
        assert v.round == 1
        assert (v.details["used"], v.details["fetched"], v.details["rejected"]) == (4, 4, {})
        assert len(v.details["scores"]) == 4 and all(s > 0 for s in v.details["scores"])
        assert (v.details["model_hash"], v.details["scores"]) == (
            votes[0].details["model_hash"],
            votes[0].details["scores"],
        )
    assert_timings(steps[0], "fetch", "aggregate", "encode", "publish", "train", "chain")
    assert fed.round(1).winner != bytes(32)  # 3 of 4 votes is the 2/3 quorum
    assert not fed.can_finalize(1) and p0.step().kind == "idle"  # p3 revealed and may still vote
    late = p3.step()  # a vote after the quorum still counts
    assert late.kind == "committed" and [e.details["model_hash"] for e in f.sink(3) if e.kind == "voted"] == [
        votes[0].details["model_hash"]
    ]
    assert fed.round(1).votes == 4 and fed.can_finalize(1) and fed.round(2).phase == Phase.REVEAL

    # the first round 2 reveal carries round 1's proposal and finalizes it: no transaction of its own
    finalizing = p0.step()
    assert (finalizing.kind, finalizing.round) == ("revealed", 2)
    info = fed.round(1)
    assert info.phase == Phase.FINALIZED and fed.current_round() == 2
    assert info.model_hash.hex() == votes[0].details["model_hash"]
    assert info.model_cid == votes[0].details["model_cid"]
    # the audit trail: four votes in round 2's commits, the winner logged in full when it was finalized
    trail = read_audit(fed, f.block).rounds[1]
    assert [p["votes"] for p in trail.proposals] == [4] and trail.proposals[0]["proposal"] == trail.winner
    assert trail.status == "finalized" and len(trail.votes) == 4
    # the next step adopts the model (it computed the same one before)
    assert p0.step().kind == "idle"
    assert [(e.kind, e.round) for e in f.sink(0) if e.kind == "adopted"] == [("adopted", 1)]
    assert p0.loaded_round == 1 and model_hash(p0.params) == info.model_hash
    assert p0.state.model_round == 1 and p0.state.model_cid == info.model_cid
    # the round's reward (10 tokens) is shared in proportion to the scores, in join order
    scores = votes[0].details["scores"]
    assert fed.members() == [p.address for p in f.peers]
    assert [fed.rewards(p.address)["credited"] for p in f.peers] == [10 * TOKEN_UNIT * s // sum(scores) for s in scores]
    assert kinds(f.step_all([p1, p2, p3])) == ["revealed"] * 3
    assert fed.round(2).phase == Phase.VOTE and fed.current_round() == 3
    assert p1.step().kind == "committed"  # round 3, voting on round 2 ...
    # ... whose outcome its log scans read from round 1's block on: all three are kept
    assert sorted(p1.state.round_blocks, key=int) == ["1", "2", "3"]


def test_malformed_updates_are_reported_to_each_voter_and_left_out(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 3)
    fed, (bad, p1, p2) = f.fed, f.peers

    def out_of_range(peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        return {k: np.full_like(v, MAX_ABS + 1) for k, v in base.items()}  # fits the size cap, not the range

    bad.make_update = out_of_range
    assert kinds(f.step_all()) == ["committed"] * 3
    assert kinds(f.step_all()) == ["revealed"] * 3
    assert kinds(f.step_all()) == ["committed"] * 3  # round 2, each with its vote on round 1
    votes = [next(e for e in f.sink(i) if e.kind == "voted") for i in range(3)]
    for i, v in enumerate(votes):
        assert v.round == 1 and (v.details["used"], v.details["fetched"]) == (2, 3)
        assert list(v.details["rejected"]) == [bad.address]
        reason = v.details["rejected"][bad.address]
        assert reason.startswith("malformed: ") and "beyond" in reason
        rejected = [e for e in f.sink(i) if e.kind == "rejected"]
        assert [(e.round, e.details["member"], e.details["reason"]) for e in rejected] == [(1, bad.address, reason)]
        assert v.details["scores"][0] == 0 and all(s > 0 for s in v.details["scores"][1:])
    assert fed.round(1).winner != bytes(32)
    assert p1.step().kind == "revealed"  # its round 2 reveal finalizes round 1
    assert fed.round(1).phase == Phase.FINALIZED
    assert kinds(f.sink(1)) == ["rejected", "voted"]
    assert fed.rewards(bad.address)["credited"] == 0 and fed.rewards(p2.address)["credited"] > 0


def test_pending_timeouts_are_applied_by_the_next_step(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 4)
    fed, chain, (p0, p1, p2, p3) = f.fed, f.chain, f.peers

    assert kinds(f.step_all([p0, p1])) == ["committed", "committed"]
    assert fed.round(1).phase == Phase.COMMIT  # 2 of 4 eligible: the window must pass
    chain.advance_time(WINDOW + 1)
    assert fed.phase(1) == Phase.REVEAL and fed.round(1).phase == Phase.COMMIT
    advanced = p2.step()
    assert (advanced.kind, advanced.round, advanced.details) == ("advanced", 1, {"window": "commit"})
    assert_timings(advanced, "chain")
    assert fed.round(1).phase == Phase.REVEAL
    assert kinds(f.step_all([p2, p3])) == ["idle", "idle"]  # too late to commit, nothing to reveal

    assert kinds(f.step_all([p0, p1])) == ["revealed", "revealed"]
    assert fed.round(1).phase == Phase.VOTE
    assert kinds(f.step_all([p0, p1])) == ["committed", "committed"]  # round 2, voting on round 1
    votes = [next(e for e in f.sink(i) if e.kind == "voted") for i in (0, 1)]
    assert [(v.details["used"], v.details["fetched"]) for v in votes] == [(2, 2), (2, 2)]
    assert p2.step().kind == "finalized"  # any member may finalize a decided round
    assert fed.round(1).phase == Phase.FINALIZED and fed.round(1).reveals == 2
    assert all(fed.rewards(p.address)["slashed"] == 0 for p in f.peers)  # not committing costs nothing

    # round 2 (opened on round 1's vote): p2 and p3 let its commit window pass
    assert fed.current_round() == 2 and fed.round(2).commits == 2
    chain.advance_time(WINDOW + 1)
    assert fed.phase(2) == Phase.REVEAL
    advanced = p3.step()
    assert (advanced.kind, advanced.round, advanced.details) == ("advanced", 2, {"window": "commit"})
    assert p3.step().kind == "idle" and fed.status(2, p3.address) == MemberStatus.NONE  # too late to commit


def test_a_restart_reveals_from_the_state_file_and_never_commits_twice(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 3)
    fed = f.fed
    first = f.peers[0]
    committed = first.step()
    assert committed.kind == "committed"

    again = f.restart(0)  # a new process: state loaded from the same file
    assert again is not first and again.state.commits["1"]["hash"] == committed.details["hash"]
    assert again.step().kind == "idle"  # already committed: status says so
    assert kinds(f.step_all(f.peers[1:])) == ["committed", "committed"]
    revealed = again.step()
    assert (revealed.kind, revealed.round) == ("revealed", 1)
    assert revealed.details["hash"] == committed.details["hash"]  # the update kept on disk, published now
    assert content_hash((f.store.root / revealed.details["cid"]).read_bytes()).hex() == committed.details["hash"]
    steps = [committed, revealed]
    while fed.round(1).phase != Phase.FINALIZED:
        events = f.step_all()
        steps.append(events[0])
        assert any(events), [e.kind for e in events]
    assert fed.round(1).reveals == 3
    assert kinds(steps, 1).count("committed") == 1
    assert "voted" in kinds(f.sink(0), 1)
    assert fed.rewards(again.address)["slashed"] == 0 and fed.rewards(again.address)["credited"] > 0


def test_a_lost_state_file_never_commits_twice_and_the_round_goes_on(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 3)
    fed, chain = f.fed, f.chain
    assert f.peers[0].step().kind == "committed"
    f.state_path(0).unlink()
    amnesic = f.restart(0, PeerState())  # its commitment's salt is gone

    assert amnesic.step().kind == "idle"  # committed already: it must not commit again
    assert kinds(f.step_all(f.peers[1:])) == ["committed", "committed"]
    assert fed.round(1).phase == Phase.REVEAL
    assert amnesic.step().kind == "idle"  # and it cannot reveal
    assert kinds(f.step_all()) == ["idle", "revealed", "revealed"]
    assert kinds(f.step_all()) == ["idle", "idle", "idle"]  # 2 of 3 revealed: the reveal window must pass
    assert fed.round(1).phase == Phase.REVEAL and fed.status(1, amnesic.address) == MemberStatus.COMMITTED

    chain.advance_time(WINDOW + 1)
    advanced = amnesic.step()
    assert (advanced.kind, advanced.details) == ("advanced", {"window": "reveal"})
    assert fed.round(1).phase == Phase.VOTE
    # round 2 opened on round 1's vote: everyone commits, the two revealers with their votes
    assert kinds(f.step_all()) == ["committed"] * 3
    assert "voted" not in kinds(f.sink(0))
    finalizing = amnesic.step()  # its round 2 reveal carries round 1's proposal
    assert (finalizing.kind, finalizing.round) == ("revealed", 2)
    info = fed.round(1)
    assert (info.phase, info.commits, info.reveals, info.votes) == (Phase.FINALIZED, 3, 2, 2)
    # the committed non-revealer is slashed and paid nothing
    assert fed.status(1, amnesic.address) == MemberStatus.SLASHED
    assert fed.rewards(amnesic.address) == {"credited": 0, "claimed": 0, "slashed": SLASH}
    assert fed.member(amnesic.address).stake == STAKE - SLASH
    assert all(fed.rewards(p.address)["credited"] > 0 for p in f.peers[1:])

    # round 2 goes on with it; for round 3 it tops its stake up from its token balance, then commits
    play_round(fed, f.peers, 2, chain)
    assert fed.round(2).phase == Phase.FINALIZED and fed.round(2).reveals == 3
    assert fed.member(amnesic.address).stake == STAKE
    assert fed.status(3, amnesic.address) in (MemberStatus.COMMITTED, MemberStatus.REVEALED)
    assert "adopted" in kinds(f.sink(0))


def test_a_peer_restarted_in_the_vote_phase_of_round_two_votes_for_the_same_model(
    sample_csv: Path, tmp_path: Path
) -> None:
    f = embedded_federation(sample_csv, tmp_path, 3)
    play_round(f.fed, f.peers, 1, f.chain)
    f.step_until(lambda: f.fed.phase(2) == Phase.VOTE)  # everyone commits and reveals round 2
    assert f.fed.round(2).reveals == 3
    f.restart(0)
    assert kinds(f.step_all()) == ["committed"] * 3  # round 3, voting on round 2
    votes = [[e for e in f.sink(i) if e.kind == "voted" and e.round == 2][-1] for i in range(3)]
    assert votes[1].details["model_hash"] == votes[2].details["model_hash"]  # the two peers that kept running
    # fails today: the restarted peer aggregates from the initial model, so its vote splits the quorum
    assert votes[0].details["model_hash"] == votes[1].details["model_hash"]
    assert f.fed.round(2).phase == Phase.VOTE and f.fed.round(2).winner != bytes(32)


def test_a_vote_is_for_the_model_every_voter_computes(sample_csv: Path, tmp_path: Path) -> None:
    """The voted model is base + the aggregate of the revealed updates, as stored at its CID."""
    f = embedded_federation(sample_csv, tmp_path, 3)
    assert kinds(f.step_all()) == ["committed"] * 3
    reveals = f.step_all()
    assert kinds(reveals) == ["revealed"] * 3
    assert f.peers[2].step().kind == "committed"  # round 2's commit carries the vote on round 1
    (vote,) = [e for e in f.sink(2) if e.kind == "voted"]
    by_address = sorted(zip((p.address.lower() for p in f.peers), reveals, strict=True))  # canonical order
    updates = [decode((f.store.root / e.details["cid"]).read_bytes(), f.nspec.layout) for _, e in by_address]
    agg = f.nspec.aggregate(updates)
    base = f.nspec.initial_model()
    expected = {k: base[k] + agg[k] for k in base}
    stored = (f.store.root / vote.details["model_cid"]).read_bytes()
    assert stored == encode(expected)
    assert vote.details["model_hash"] == content_hash(stored).hex()


class CountingStore:
    """A store that remembers every CID it was asked for."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gets: list[str] = []

    def put(self, data: bytes) -> str:
        return self.inner.put(data)

    def get(self, cid: str, max_size: int, timeout: float | None = None) -> bytes:
        self.gets.append(cid)
        return self.inner.get(cid, max_size, timeout)


def test_a_peer_fetches_each_update_while_the_others_reveal_and_once(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 3)
    fed, (p0, p1, p2) = f.fed, f.peers
    counting = CountingStore(f.store)
    p0.store = counting
    assert kinds(f.step_all()) == ["committed"] * 3
    r0, r1 = p0.step(), p1.step()
    assert [r0.kind, r1.kind] == ["revealed", "revealed"]
    cid1 = r1.details["cid"]
    assert counting.gets == []
    assert p0.step().kind == "idle"  # in the reveal phase with nothing to send: it fetches what is revealed
    assert cid1 in counting.gets and len(counting.gets) == 2  # its own and p1's
    assert p0.step().kind == "idle" and len(counting.gets) == 2  # nothing new revealed: nothing fetched
    r2 = p2.step()
    assert r2.kind == "revealed"
    cid2 = r2.details["cid"]
    assert fed.round(1).phase == Phase.VOTE
    assert p0.step().kind == "committed"  # aggregates round 1 from what it prefetched, and fetches the rest
    assert sorted(counting.gets) == sorted({*counting.gets}) and cid2 in counting.gets  # each content once
    assert len(counting.gets) == 3
