"""Attacks a security review demonstrated against the federation contract, each closed.

Every test runs on eth-tester and on a real anvil (the `chain` fixture). The
numbered ones follow the review: (1) an oversized CID that freezes the
federation, (3) the first founder capturing admissions, (4) a third of the
members admitting anyone by approve/leave/rejoin cycles, (5) a blocking
minority that reveals and never votes. (2), a short garbage CID that stalls
honest peers, needs peers and a store: tests/e2e/test_cid_attacks.py.
"""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from ledger.audit import read_audit
from ledger.chain import Chain
from ledger.client import proposal_id
from ledger.errors import revert_class
from ledger.types import MemberStatus, Phase, Proposal
from tests.harness import CID, ETHER, Harness, funded

E = revert_class
WINDOW = 100  # the harness's phase windows


def _reveal_all(h: Harness, members: list[LocalAccount]) -> int:
    r = h.round
    for m in members:
        h.commit(m, r)
    if h.fed.round(r).phase == Phase.COMMIT:
        h.chain.advance_time(WINDOW)
    for m in members:
        h.reveal(m, r)
    if h.fed.round(r).phase == Phase.REVEAL:
        h.chain.advance_time(WINDOW)
    return r


def _candidate(h: Harness) -> LocalAccount:
    c = funded(h.chain, 1)[0]
    h.token.transfer(h.deployer, c.address, 1000 * ETHER)
    return c


# -- 1. an oversized CID, and a decided round nobody finalizes ------------------------------


def test_an_oversized_or_malformed_cid_is_refused_where_it_enters(joined: Harness) -> None:
    a, b, *_ = joined.members
    r = joined.round
    for m in joined.members:
        joined.commit(m, r)
    content, salt = joined.secrets[(r, a.address)]
    for bad in ("b" * 48_000, "b" * 101, "Qm" + "x" * 20, "x" * 59, ""):
        with pytest.raises(E("InvalidCid")):
            joined.fed.reveal(a, r, content, bad, salt)
    for m in joined.members:
        joined.reveal(m, r)
    scores = joined.scores()
    for bad in ("b" * 48_000, "zb" + "a" * 57):
        with pytest.raises(E("InvalidCid")):
            joined.fed.vote(b, r, b"\x11" * 32, bad, scores)


def test_the_cid_is_bound_into_what_voters_endorse(joined: Harness) -> None:
    """The first voter cannot attach its own CID to the honest model and scores."""
    attacker, *honest = joined.members
    r = _reveal_all(joined, joined.members)
    model, scores = b"\x22" * 32, joined.scores()
    garbage = "b" + "a" * 58  # well-formed, nothing behind it
    joined.fed.vote(attacker, r, model, garbage, scores)  # first, with the honest model and scores
    for m in honest:
        joined.fed.vote(m, r, model, CID, scores)  # each voter endorses the CID it published
    info = joined.fed.round(r)
    assert info.winner == proposal_id(model, CID, scores) != proposal_id(model, garbage, scores)
    with pytest.raises(E("ProposalMismatch")):  # nor can a finalizer swap the CID in
        joined.fed.finalize(honest[0], r, Proposal(model, garbage, scores))
    joined.fed.finalize(honest[0], r)
    assert joined.fed.round(r).model_cid == CID


@pytest.mark.timetravel
def test_a_decided_round_nobody_finalizes_closes_after_its_window(joined: Harness) -> None:
    r = _reveal_all(joined, joined.members)
    for m in joined.members:
        joined.fed.vote(m, r, b"\x33" * 32, CID, joined.scores())
    assert joined.fed.can_finalize(r)
    joined.chain.advance_time(2 * WINDOW)  # the vote window, then the finalize window, pass
    assert joined.fed.phase(r) == Phase.FAILED and not joined.fed.can_finalize(r)
    joined.fed.advance(joined.members[0])
    # Round r+1 opened on r's vote, trained on a model that never came: it fails with r.
    assert joined.fed.round(r).phase == Phase.FAILED and joined.round == r + 2
    trail = read_audit(joined.fed, joined.deployment.block).rounds
    assert trail[r].fail_reason == "not-finalized" and trail[r + 1].fail_reason == "previous-failed"
    for m in joined.members:  # nobody is stuck: every revealer may leave
        joined.fed.leave(m)


# -- 3. the first founder to join captures the federation ------------------------------------


def test_the_first_founder_alone_cannot_admit_or_open_round_one(fed: Harness) -> None:
    first, *_ = fed.members
    fed.fed.join(first)
    sybils = [_candidate(fed) for _ in range(3)]
    for s in sybils:
        fed.fed.approve_member(first, s.address)
        assert not fed.fed.is_admitted(s.address)  # 1 of 4 founders is no majority
    with pytest.raises(E("NotAdmitted")):
        fed.fed.join(sybils[0])
    fed.fed.advance(first)
    assert fed.round == 0
    # leaving and rejoining never counts as another founder's join
    fed.fed.leave(first)
    with pytest.raises(E("NotAdmitted")):  # and a member who left must be admitted again
        fed.fed.join(first)
    assert fed.fed.founders_pending() == 3
    for m in fed.members[1:3]:
        fed.fed.join(m)
        assert fed.round == 0 and fed.fed.founders_pending() == 4 - fed.members.index(m) - 1
    fed.fed.join(fed.members[3])  # every founder has now joined once: round 1 opens, without the leaver
    assert fed.round == 1 and fed.fed.round(1).eligible == 3


def test_founders_who_left_do_not_count_towards_opening_round_one(chain: Chain) -> None:
    """Two honest founders join with two attackers and leave: the attackers cannot open round 1."""
    h = Harness.create(chain, founders=7, min_peers=2)
    honest, attackers = h.members[:2], h.members[5:]
    for m in honest + attackers:
        h.fed.join(m)
    for m in honest:
        h.fed.leave(m)
    assert h.fed.active_founders() == 2 and h.fed.founders_pending() == 3
    h.fed.advance(attackers[0])  # four founders have joined, but only two are members
    assert h.round == 0
    sybil = _candidate(h)
    for a in attackers:
        h.fed.approve_member(a, sybil.address)
    assert not h.fed.is_admitted(sybil.address)  # two of seven founders is no majority
    with pytest.raises(E("NotAdmitted")):
        h.fed.join(sybil)
    for m in h.members[2:5]:  # the last founder's first join opens round 1: five of seven are in
        assert h.round == 0
        h.fed.join(m)
    assert h.round == 1 and h.fed.round(1).eligible == 5


# -- 4. a third of the members admits anyone --------------------------------------------------


def test_approvals_lapse_when_a_member_leaves_and_leavers_need_admission(chain: Chain) -> None:
    h = Harness.create(chain, founders=7)
    h.join_all()
    colluders = h.members[:3]
    target = _candidate(h)
    for c in colluders:
        h.fed.approve_member(c, target.address)
    assert h.fed.approvals(target.address) == 3 and not h.fed.is_admitted(target.address)
    h.fed.leave(colluders[0])
    assert h.fed.approvals(target.address) == 0  # approvals lapse
    with pytest.raises(E("NotAdmitted")):
        h.fed.join(colluders[0])
    for c in colluders[1:]:  # approving again counts anew, but two of six is no majority
        h.fed.approve_member(c, target.address)
    assert not h.fed.is_admitted(target.address)


def test_admissions_are_bounded_per_round(chain: Chain) -> None:
    h = Harness.create(chain, founders=2)
    h.join_all()
    limit = h.fed.admissions_per_round()
    for _ in range(limit):
        c = _candidate(h)
        h.fed.approve_member(h.members[0], c.address)
        h.fed.approve_member(h.members[1], c.address)
        assert h.fed.is_admitted(c.address)
    late = _candidate(h)
    h.fed.approve_member(h.members[0], late.address)
    with pytest.raises(E("AdmissionLimit")):
        h.fed.approve_member(h.members[1], late.address)


# -- 5. a blocking minority that reveals and never votes -------------------------------------


@pytest.mark.timetravel
def test_a_third_abstaining_cannot_stall_a_round_and_pays_for_it(chain: Chain) -> None:
    h = Harness.create(chain, founders=6)
    h.join_all()
    voters, abstainers = h.members[:4], h.members[4:]
    cfg = h.fed.config()
    slash = cfg["stake"] * cfg["slash_bps"] // 10_000
    for _ in range(3):  # round after round
        r = _reveal_all(h, h.members)
        for m in voters:
            h.fed.vote(m, r, b"\x44" * 32, CID, h.scores())
        assert not h.fed.can_finalize(r)  # 4 of 6 decide it, but the others may vote until the deadline ...
        h.chain.advance_time(WINDOW)
        assert h.fed.can_finalize(r)  # ... and then it closes without them
        h.fed.finalize(voters[0], r)
        assert h.fed.round(r).phase == Phase.FINALIZED
        for m in abstainers:
            assert h.fed.status(r, m.address) == MemberStatus.SLASHED
            h.fed.add_stake(m, slash)
        paid = [h.fed.rewards(m.address)["credited"] for m in h.members]
        assert all(p > 0 for p in paid[:4]) and paid[4:] == [0, 0]
    assert all(h.fed.rewards(m.address)["slashed"] == 3 * slash for m in abstainers)


def test_a_third_voting_for_another_model_cannot_stall_a_round(chain: Chain) -> None:
    """Exactly two thirds is a quorum (the default 0.6666): dissenters cannot fail every round for free."""
    h = Harness.create(chain, founders=6)
    h.join_all()
    honest, dissenters = h.members[:4], h.members[4:]
    for _ in range(2):  # round after round
        r = _reveal_all(h, h.members)
        for m in honest:
            h.fed.vote(m, r, b"\x44" * 32, CID, h.scores())
        for m in dissenters:
            h.fed.vote(m, r, b"\x99" * 32, CID, h.scores())
        assert h.fed.can_finalize(r)  # every revealer voted, and 4 of 6 is two thirds
        h.fed.finalize(honest[0], r)
        info = h.fed.round(r)
        assert info.phase == Phase.FINALIZED and info.model_hash == b"\x44" * 32


def test_a_third_of_the_founders_cannot_admit_by_opening_round_one_early(chain: Chain) -> None:
    """Three of nine founders open round 1 with a bare majority in, then try to admit a sybil alone.

    Founders who have not joined yet still count in the electorate after round 1 opens.
    """
    h = Harness.create(chain, founders=9, min_peers=2)
    attackers, honest = h.members[:3], h.members[3:]
    for m in honest[:2] + attackers:  # five of nine founders in: a bare majority
        h.fed.join(m)
    h.fed.advance(attackers[0])
    assert h.round == 1
    sybil = _candidate(h)
    for a in attackers:
        h.fed.approve_member(a, sybil.address)
    assert h.fed.approvals(sybil.address) == 3 and not h.fed.is_admitted(sybil.address)  # 3 of 5 + 4 pending
    with pytest.raises(E("NotAdmitted")):
        h.fed.join(sybil)
    h.fed.approve_member(honest[0], sybil.address)
    h.fed.approve_member(honest[1], sybil.address)
    assert h.fed.is_admitted(sybil.address)  # five of nine: a real majority


@pytest.mark.timetravel
def test_more_than_a_third_abstaining_fails_the_round_and_costs_the_abstainers(joined: Harness) -> None:
    r = _reveal_all(joined, joined.members)
    for m in joined.members[:2]:
        joined.fed.vote(m, r, b"\x55" * 32, CID, joined.scores())
    joined.chain.advance_time(WINDOW)
    assert joined.fed.phase(r) == Phase.FAILED
    joined.fed.advance(joined.members[0])
    assert joined.fed.round(r).phase == Phase.FAILED
    for m in joined.members[2:]:
        assert joined.fed.status(r, m.address) == MemberStatus.SLASHED
    for m in joined.members[:2]:
        assert joined.fed.status(r, m.address) == MemberStatus.VOTED


@pytest.mark.timetravel
def test_no_more_votes_after_the_deadline(joined: Harness) -> None:
    r = _reveal_all(joined, joined.members)
    for m in joined.members[:3]:
        joined.fed.vote(m, r, b"\x66" * 32, CID, joined.scores())
    joined.chain.advance_time(WINDOW)  # decided, in its finalize window: no more votes
    with pytest.raises(E("VoteWindowClosed")):
        joined.fed.vote(joined.members[3], r, b"\x66" * 32, CID, joined.scores())
    joined.fed.finalize(joined.members[0], r)
    assert joined.fed.status(r, joined.members[3].address) == MemberStatus.SLASHED


def test_a_forged_proposal_in_a_reveal_neither_finalizes_nor_blocks_the_reveal(joined: Harness) -> None:
    """A member reveals in round r+1 with a body that is not round r's winner: the reveal goes through,
    round r stays in its vote, and the next reveal carrying the winner finalizes it."""
    attacker, *honest = joined.members
    r = _reveal_all(joined, joined.members)  # round r+1 opened on round r's vote
    scores = joined.scores(round_id=r)
    winner = Proposal(b"\x44" * 32, CID, scores)
    for m in joined.members:
        joined.commit(m, r + 1, None, proposal_id(winner.model_hash, winner.model_cid, winner.scores))
    assert joined.fed.can_finalize(r) and joined.fed.round(r + 1).phase == Phase.REVEAL
    joined.reveal(attacker, r + 1, Proposal(b"\x55" * 32, CID, scores))  # another model: ignored
    joined.reveal(honest[1], r + 1, Proposal(winner.model_hash, "b" + "q" * 58, scores))  # another CID: ignored
    assert joined.fed.status(r + 1, honest[1].address) == MemberStatus.REVEALED
    assert joined.fed.status(r + 1, attacker.address) == MemberStatus.REVEALED
    assert joined.fed.round(r).phase == Phase.VOTE
    joined.reveal(honest[0], r + 1, winner)
    info = joined.fed.round(r)
    assert info.phase == Phase.FINALIZED and info.model_hash == winner.model_hash and info.model_cid == CID
