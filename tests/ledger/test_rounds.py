"""Rounds: commit -> reveal -> vote -> finalize, every revert path, rewards, slashing, claims."""

from __future__ import annotations

import os
from typing import Any

import pytest
from web3.logs import DISCARD

from ledger.audit import read_audit
from ledger.client import FederationClient, proposal_id
from ledger.deploy import deploy
from ledger.errors import ContractRevert, revert_class
from ledger.types import FailReason, MemberStatus, Phase, Proposal
from tests.harness import CID, Harness, funded

E = revert_class


def _assert_conserved(h: Harness) -> None:
    acc = h.fed.accounting()
    assert acc.held == acc.staked + acc.pool + acc.unclaimed


def test_a_full_round_advances_eagerly_and_credits_by_score(joined: Harness) -> None:
    a, b, c, d = joined.members
    r = joined.round
    for m in joined.members:
        assert joined.fed.round(r).phase == Phase.COMMIT
        joined.commit(m)
    assert joined.fed.round(r).phase == Phase.REVEAL  # everyone committed: no waiting
    for m in joined.members:
        joined.reveal(m)
    assert joined.fed.round(r).phase == Phase.VOTE
    scores = joined.scores({a.address: 1, b.address: 1, c.address: 2, d.address: 0})
    model = os.urandom(32)
    for m in (a, b, c):
        joined.fed.vote(m, r, model, CID, scores)
    info = joined.fed.round(r)
    assert info.winner == proposal_id(model, CID, scores)  # 3 of 4 >= 66.67%
    assert not joined.fed.can_finalize(r)  # d revealed and may still vote
    with pytest.raises(E("VotesPending")):
        joined.fed.finalize(d, r)
    joined.fed.vote(d, r, model, CID, scores)
    assert joined.fed.can_finalize(r)
    joined.fed.finalize(d, r)
    info = joined.fed.round(r)
    assert (info.phase, info.model_hash, info.model_cid) == (Phase.FINALIZED, model, CID)
    assert joined.fed.last_finalized() == r
    assert joined.round == r + 1 and joined.fed.round(r + 1).phase == Phase.COMMIT
    reward = joined.fed.config()["reward_per_round"]
    credited = [joined.fed.rewards(m.address)["credited"] for m in joined.members]
    assert credited == [reward // 4, reward // 4, reward // 2, 0]
    _assert_conserved(joined)


@pytest.mark.timetravel
def test_commit_reverts(joined: Harness) -> None:
    a, b, *_ = joined.members
    r = joined.round
    outsider = funded(joined.chain, 1)[0]
    with pytest.raises(E("NotMember")):
        joined.commit(outsider)
    with pytest.raises(E("InvalidCommitment")):
        joined.fed.commit(a, r, b"\0" * 32)
    joined.commit(a)
    with pytest.raises(E("AlreadyCommitted")):
        joined.commit(a)
    with pytest.raises(E("NotCurrentRound")):
        joined.commit(b, r + 1)
    joined.commit(b)
    joined.chain.advance_time(100)  # window over, 2 commits >= min_peers: reveal phase
    with pytest.raises(E("RoundNotInPhase")) as late:
        joined.commit(joined.members[2])
    assert late.value.error_args == {"round": r, "expected": "COMMIT", "actual": "REVEAL"}
    assert "Round 1 is in phase REVEAL" in str(late.value)


def test_reveal_reverts(joined: Harness) -> None:
    a, b, c, d = joined.members
    r = joined.round
    joined.commit(a)
    with pytest.raises(E("RoundNotInPhase")):
        joined.reveal(a)  # still the commit phase
    for m in (b, c, d):
        joined.commit(m)
    with pytest.raises(E("NotCommitted")):
        joined.fed.reveal(funded(joined.chain, 1)[0], r, b"\1" * 32, CID, b"\2" * 32)
    content, salt = joined.secrets[(r, a.address)]
    with pytest.raises(E("CommitmentMismatch")):
        joined.fed.reveal(a, r, content, CID, os.urandom(32))  # wrong salt
    with pytest.raises(E("CommitmentMismatch")):
        joined.fed.reveal(b, r, content, CID, salt)  # a's opening, b's commitment
    joined.reveal(a)
    with pytest.raises(E("AlreadyRevealed")):
        joined.reveal(a)


@pytest.mark.timetravel
def test_a_commitment_replayed_in_another_round_or_contract_cannot_be_revealed(joined: Harness) -> None:
    a = joined.members[0]
    r = joined.round
    content, salt = os.urandom(32), os.urandom(32)
    c = joined.fed.commitment_for(r, a.address, content, salt)
    joined.fed.commit(a, r, c)
    joined.play(committers=joined.members[1:])  # round r finalizes without a's reveal
    joined.fed.add_stake(a, joined.fed.rewards(a.address)["slashed"])  # a was slashed for it
    joined.fed.commit(a, r + 1, c)  # the same commitment, next round
    for m in joined.members[1:]:
        joined.commit(m, r + 1)
    with pytest.raises(E("CommitmentMismatch")):
        joined.fed.reveal(a, r + 1, content, CID, salt)
    # ... and in a second federation with the same members
    other = FederationClient(joined.chain, deploy(joined.chain, joined.deployer, joined.spec).federation)
    for m in joined.members:
        other.join(m)
    other.commit(a, 1, c)
    for m in joined.members[1:]:
        other.commit(m, 1, os.urandom(32))
    with pytest.raises(E("CommitmentMismatch")):
        other.reveal(a, 1, content, CID, salt)


@pytest.mark.timetravel
def test_an_update_cannot_be_copied_after_its_reveal(joined: Harness) -> None:
    """Commit-reveal: once a's update is public, nobody can claim it as their own in this round."""
    a, b, c, _ = joined.members
    r = joined.round
    joined.commit(a)
    joined.commit(b)  # b commits a placeholder, hoping to swap in a's update later
    joined.chain.advance_time(100)  # c and d never committed; the window closes
    joined.reveal(a)
    content, salt = joined.secrets[(r, a.address)]
    logged = joined.fed.reveals([r], from_block=joined.deployment.block)
    assert logged[-1].content_hash == content  # a's update is now public
    with pytest.raises(E("CommitmentMismatch")):
        joined.fed.reveal(b, r, content, CID, salt)  # a's opening under b's commitment
    with pytest.raises(E("CommitmentMismatch")):
        joined.fed.reveal(b, r, content, CID, os.urandom(32))  # or with b's own salt
    with pytest.raises(E("RoundNotInPhase")):  # commitments closed before the first reveal
        joined.fed.commit(b, r, joined.fed.commitment_for(r, b.address, content, salt))
    with pytest.raises(E("RoundNotInPhase")):  # so a member that waited to see the reveals is too late
        joined.fed.commit(c, r, joined.fed.commitment_for(r, c.address, content, os.urandom(32)))
    assert joined.fed.status(r, b.address) == MemberStatus.COMMITTED
    assert joined.fed.status(r, c.address) == MemberStatus.NONE


@pytest.mark.timetravel
def test_vote_and_finalize_reverts(joined: Harness) -> None:
    a, b, c, d = joined.members
    r = joined.round
    for m in joined.members:
        joined.commit(m)
    for m in (a, b, c):
        joined.reveal(m)
    with pytest.raises(E("RoundNotInPhase")):
        joined.fed.vote(a, r, b"\1" * 32, CID, joined.scores())
    joined.chain.advance_time(100)
    scores = joined.scores({d.address: 0})
    with pytest.raises(E("NotRevealed")):
        joined.fed.vote(d, r, b"\1" * 32, CID, scores)  # committed, never revealed
    with pytest.raises(E("EmptyModelHash")):
        joined.fed.vote(a, r, b"\0" * 32, CID, scores)
    with pytest.raises(E("ScoresLengthMismatch")):
        joined.fed.vote(a, r, b"\1" * 32, CID, scores[:-1])
    with pytest.raises(E("UnknownProposal")):
        joined.fed._send(a, "voteFor", r, b"\5" * 32)
    with pytest.raises(E("NoQuorum")):
        joined.fed.finalize(a, r, Proposal(b"\1" * 32, CID, scores))
    joined.fed.vote(a, r, b"\1" * 32, CID, scores)
    with pytest.raises(E("AlreadyVoted")):
        joined.fed.vote(a, r, b"\1" * 32, CID, scores)
    joined.fed.vote(b, r, b"\1" * 32, CID, scores)
    with pytest.raises(E("VotesPending")):
        joined.fed.finalize(a, r, Proposal(b"\1" * 32, CID, scores))  # 2 of 3 decide it; c may still vote
    joined.fed.vote(c, r, b"\1" * 32, CID, scores)
    for wrong in (
        Proposal(b"\1" * 32, CID, [s + 1 for s in scores]),
        Proposal(b"\2" * 32, CID, scores),
        Proposal(b"\1" * 32, CID + "x", scores),
    ):
        with pytest.raises(E("ProposalMismatch")):
            joined.fed.finalize(a, r, wrong)
    joined.fed.finalize(d, r)  # anyone may finalize; scores come from the Proposed event
    with pytest.raises(E("RoundNotInPhase")) as twice:
        joined.fed.finalize(d, r)
    assert twice.value.error_args["actual"] == "FINALIZED"


def test_a_split_vote_fails_the_round_once_everyone_voted(joined: Harness) -> None:
    a, b, c, d = joined.members
    r = joined.round
    for m in joined.members:
        joined.commit(m)
    for m in joined.members:
        joined.reveal(m)
    for m, model in ((a, b"\1"), (b, b"\1"), (c, b"\2"), (d, b"\2")):
        joined.fed.vote(m, r, model * 32, CID, joined.scores(round_id=r))
    assert joined.fed.round(r).phase == Phase.FAILED
    assert joined.fed.round(r + 1).phase == Phase.FAILED  # opened on r's vote: it fails with r
    assert joined.round == r + 2
    assert all(joined.fed.rewards(m.address)["credited"] == 0 for m in joined.members)


@pytest.mark.timetravel
def test_timeouts_fail_rounds_lazily(joined: Harness) -> None:
    a, b, c, _ = joined.members
    r = joined.round
    joined.commit(a)
    joined.chain.advance_time(100)
    assert joined.fed.phase(r) == Phase.FAILED  # the view sees it before any transaction
    assert joined.fed.round(r).phase == Phase.COMMIT
    joined.fed.advance(b)
    assert joined.fed.round(r).phase == Phase.FAILED and joined.round == r + 1
    # reveal timeout: two commit, one reveals -> too few reveals, the silent one is slashed
    r += 1
    joined.commit(a)
    joined.commit(b)
    joined.chain.advance_time(100)
    joined.reveal(a)
    joined.chain.advance_time(100)
    joined.fed.advance(c)
    assert joined.fed.round(r).phase == Phase.FAILED
    assert joined.fed.status(r, b.address) == MemberStatus.SLASHED
    # vote timeout without quorum (b, slashed, is short of stake now)
    r += 1
    joined.commit(a)
    joined.commit(c)
    joined.chain.advance_time(100)
    joined.reveal(a)
    joined.reveal(c)
    joined.fed.vote(a, r, b"\1" * 32, CID, joined.scores())
    joined.chain.advance_time(100)
    assert joined.fed.phase(r) == Phase.FAILED
    joined.fed.advance(b)
    assert joined.fed.round(r).phase == Phase.FAILED


def _logged(h: Harness, receipt: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every event `receipt` logged, in order, with its arguments."""
    names = [e["name"] for e in h.fed.contract.abi if e["type"] == "event"]
    logs = [
        (log["logIndex"], name, dict(log["args"]))
        for name in names
        for log in getattr(h.fed.contract.events, name)().process_receipt(receipt, errors=DISCARD)
    ]
    return [(name, args) for _, name, args in sorted(logs, key=lambda x: x[0])]


@pytest.mark.timetravel
def test_one_transaction_applies_every_timeout_due_in_order(joined: Harness) -> None:
    """Each phase whose window passed is entered as of the previous deadline, then the round fails;
    a vote begins when it is entered (the next round opens with it)."""
    a, b, c, d = joined.members
    fed, window = joined.fed, 100
    # Commit -> Reveal -> Failed: both windows pass and nobody reveals
    r = joined.round
    joined.commit(a)
    joined.commit(b)
    joined.chain.advance_time(2 * window + 50)
    assert fed.phase(r) == Phase.FAILED and fed.round(r).phase == Phase.COMMIT
    logged = _logged(joined, fed.advance(c))
    assert [name for name, _ in logged] == ["PhaseChanged", "Slashed", "Slashed", "RoundFailed", "RoundOpened"]
    assert logged[0][1] == {"round": r, "phase": Phase.REVEAL}
    assert logged[3][1] == {"round": r, "phase": Phase.REVEAL, "reason": FailReason.TOO_FEW_REVEALS}
    info = fed.round(r)
    assert info.phase == Phase.FAILED and info.phase_at == info.opened_at + window  # Reveal began at the deadline
    for m in (a, b):
        fed.add_stake(m, fed.rewards(m.address)["slashed"])
    # Reveal -> Vote: d never reveals; the vote begins when the reveal window's end is applied,
    # and the next round opens with it. Vote -> Failed: nobody votes in the vote window.
    r = joined.round
    for m in joined.members:
        joined.commit(m)
    for m in (a, b, c):
        joined.reveal(m)
    joined.chain.advance_time(window + 50)
    assert fed.phase(r) == Phase.VOTE and fed.round(r).phase == Phase.REVEAL
    logged = _logged(joined, fed.advance(a))
    assert [name for name, _ in logged] == ["PhaseChanged", "RoundOpened"]
    assert logged[0][1] == {"round": r, "phase": Phase.VOTE}
    voting_since = fed.round(r).phase_at
    joined.chain.advance_time(window + 50)
    assert fed.phase(r) == Phase.FAILED
    logged = _logged(joined, fed.advance(a))
    # d never revealed; a, b and c revealed and never voted: withholding a vote costs the same
    assert [name for name, _ in logged] == [*["Slashed"] * 4, "RoundFailed", "RoundFailed", "RoundOpened"]
    assert [args["member"] for _, args in logged[0:4]] == [a.address, b.address, c.address, d.address]
    assert logged[4][1] == {"round": r, "phase": Phase.VOTE, "reason": FailReason.NO_QUORUM}
    assert logged[5][1] == {"round": r + 1, "phase": Phase.COMMIT, "reason": FailReason.PREVIOUS_FAILED}
    info = fed.round(r)
    assert info.phase == Phase.FAILED and info.phase_at == voting_since
    assert fed.phase(r) == Phase.FAILED and joined.round == r + 2


@pytest.mark.timetravel
def test_a_round_waiting_on_a_vote_due_to_fail_is_seen_failed_before_any_transaction(joined: Harness) -> None:
    """Round r+1 (opened on r's vote) has every reveal and waits for r to close; r's vote runs out
    with nobody voting. The views say r+1 failed, as the next transaction finds it: it fails r
    first, and r+1 with it (a view that kept saying Reveal sent peers after a round already lost)."""
    a = joined.members[0]
    fed, r = joined.fed, joined.round
    for m in joined.members:
        joined.commit(m, r)
    for m in joined.members:
        joined.reveal(m, r)
    assert fed.round(r).phase == Phase.VOTE and joined.round == r + 1
    for m in joined.members:
        joined.commit(m, r + 1)
    for m in joined.members:
        joined.reveal(m, r + 1)
    assert fed.phase(r + 1) == Phase.REVEAL  # every reveal in, waiting for r's vote
    joined.chain.advance_time(fed.config()["vote_window"] + 10)
    assert fed.phase(r) == Phase.FAILED
    assert fed.phase(r + 1) == Phase.FAILED and fed.round(r + 1).phase == Phase.REVEAL
    view = fed.step_view(a.address)
    assert (view.round, view.live, view.stored, view.due) == (r + 1, Phase.FAILED, Phase.REVEAL, True)
    logged = [args for name, args in _logged(joined, fed.advance(a)) if name == "RoundFailed"]
    assert logged == [
        {"round": r, "phase": Phase.VOTE, "reason": FailReason.NO_QUORUM},
        {"round": r + 1, "phase": Phase.REVEAL, "reason": FailReason.PREVIOUS_FAILED},
    ]
    assert fed.round(r + 1).phase == Phase.FAILED and joined.round == r + 2


@pytest.mark.timetravel
def test_a_committer_that_never_reveals_is_slashed_exactly_once(joined: Harness) -> None:
    a, b, c, d = joined.members
    cfg = joined.fed.config()
    pool = joined.fed.accounting().pool
    r = joined.play(committers=joined.members, revealers=[a, b, c])
    slash = cfg["stake"] * cfg["slash_bps"] // 10_000
    assert joined.fed.round(r).phase == Phase.FINALIZED
    assert joined.fed.status(r, d.address) == MemberStatus.SLASHED
    assert joined.fed.rewards(d.address) == {"credited": 0, "claimed": 0, "slashed": slash}
    assert joined.fed.member(d.address).stake == cfg["stake"] - slash
    paid = sum(joined.fed.rewards(m.address)["credited"] for m in (a, b, c))
    assert cfg["reward_per_round"] - 3 < paid <= cfg["reward_per_round"]  # thirds, rounded down
    assert joined.fed.accounting().pool == pool + slash - paid
    joined.play(committers=[a, b, c])  # next round: d is not slashed again
    assert joined.fed.rewards(d.address)["slashed"] == slash
    with pytest.raises(E("NotEligible")):
        joined.commit(d)  # its stake is short now
    joined.fed.add_stake(d, slash)
    joined.commit(d)
    _assert_conserved(joined)


def test_claim_pays_credited_rewards_once(joined: Harness) -> None:
    a = joined.members[0]
    joined.play()
    credited = joined.fed.rewards(a.address)["credited"]
    assert credited > 0
    balance = joined.token.balance_of(a.address)
    joined.fed.claim(a)
    assert joined.token.balance_of(a.address) == balance + credited
    assert joined.fed.rewards(a.address) == {"credited": 0, "claimed": credited, "slashed": 0}
    with pytest.raises(E("NothingToClaim")):
        joined.fed.claim(a)
    _assert_conserved(joined)


def test_rewards_stop_when_the_pool_runs_dry(chain: object) -> None:
    from ledger.chain import Chain

    assert isinstance(chain, Chain)
    h = Harness.create(chain, founders=2, reward_per_round=6_000)  # the pool holds 10,000
    h.join_all()
    h.play()
    h.play()
    total = sum(h.fed.rewards(m.address)["credited"] for m in h.members)
    assert total == 10_000 * 10**18
    assert h.fed.accounting().pool == 0
    h.play()  # a round still finalizes with an empty pool; nobody is paid
    assert sum(h.fed.rewards(m.address)["credited"] for m in h.members) == total


def test_revert_errors_are_contract_reverts(joined: Harness) -> None:
    with pytest.raises(ContractRevert):
        joined.fed.claim(joined.members[0])


def test_a_commit_logs_the_privacy_its_sender_says_it_spent_and_nothing_without(joined: Harness) -> None:
    """`epsilonMilli` rides in the commit: logged as `PrivacySpent` (for the audit trail) only when not zero."""
    a, b = joined.members[0], joined.members[1]
    r = joined.round
    start = joined.chain.w3.eth.block_number
    c = joined.fed.commitment_for(r, a.address, os.urandom(32), os.urandom(32))
    joined.fed.commit(a, r, c, bytes(32), 2_345)
    joined.commit(b)  # epsilon 0: no event
    said = [e["args"] for e in joined.fed.events("PrivacySpent", start)]
    assert [(e["round"], e["member"], e["epsilonMilli"]) for e in said] == [(r, a.address, 2_345)]
    trail = read_audit(joined.fed, start).rounds[r].commits
    assert {c["member"]: c.get("epsilon") for c in trail} == {a.address: 2.345, b.address: None}


@pytest.mark.timetravel
def test_encryption_keys_are_registered_once_by_members_and_required_from_the_next_sealing(fed: Harness) -> None:
    """`setEncryptionKey`: members only, once, never zero; `since` is the first round whose reveals all come
    after it (the open round while it is in its commit phase, else the next); a member who left stays listed
    (a round it committed to was sealed to it), marked inactive (nothing is sealed to it any more)."""
    a, b, c, d = fed.members
    with pytest.raises(ContractRevert, match="NotMember"):
        fed.fed.set_encryption_key(a, b"\x01" * 32)
    fed.fed.join(a)
    fed.fed.set_encryption_key(a, b"\x01" * 32)  # before round 1 opens
    for key in (b"\x02" * 32, b"\x01" * 32):
        with pytest.raises(ContractRevert, match="EncryptionKeyRejected"):
            fed.fed.set_encryption_key(a, key)
    for m in (b, c, d):
        fed.fed.join(m)
    with pytest.raises(ContractRevert, match="EncryptionKeyRejected"):
        fed.fed.set_encryption_key(b, bytes(32))
    r = fed.round
    fed.fed.set_encryption_key(b, b"\x03" * 32)  # round r in its commit phase
    fed.commit(a, r)
    fed.commit(b, r)
    fed.chain.advance_time(fed.fed.config()["commit_window"])
    fed.fed.advance(a)
    assert fed.fed.round(r).phase == Phase.REVEAL
    fed.fed.set_encryption_key(c, b"\x04" * 32)  # round r's reveals have begun: from round r + 1
    assert fed.fed.encryption_keys() == {
        a.address: (b"\x01" * 32, 1, True),
        b.address: (b"\x03" * 32, r, True),
        c.address: (b"\x04" * 32, r + 1, True),
    }
    logged = [(e["args"]["member"], e["args"]["since"]) for e in fed.fed.events("EncryptionKeySet")]
    assert logged == [(a.address, 1), (b.address, r), (c.address, r + 1)]
    fed.fed.leave(d)
    fed.fed.leave(c)  # not committed: it may leave, and is no longer sealed to
    assert {m: v[2] for m, v in fed.fed.encryption_keys().items()} == {
        a.address: True,
        b.address: True,
        c.address: False,
    }
