"""Membership: founders, admission by majority, join, stake, leave, funding."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from ledger.chain import Chain
from ledger.deploy import deploy_contract
from ledger.errors import SpecError, revert_class
from ledger.spec import load_spec, spec_from_dict
from ledger.types import Phase
from tests.harness import Harness, funded

NotMember = revert_class("NotMember")
NotAdmitted = revert_class("NotAdmitted")
AlreadyMember = revert_class("AlreadyMember")
AlreadyApproved = revert_class("AlreadyApproved")
ZeroAmount = revert_class("ZeroAmount")
NotEligible = revert_class("NotEligible")
LeaveWhileCommitted = revert_class("LeaveWhileCommitted")


def test_round_one_opens_when_every_founder_has_joined(fed: Harness) -> None:
    for m in fed.members[:-1]:
        fed.fed.join(m)
        assert fed.round == 0
    fed.fed.join(fed.members[-1])
    assert fed.round == 1
    info = fed.fed.round(1)
    assert (info.phase, info.member_count, info.eligible) == (Phase.COMMIT, 4, 4)
    assert fed.fed.members() == [m.address for m in fed.members]
    stake = fed.fed.config()["stake"]
    assert all(fed.fed.member(m.address).stake == stake for m in fed.members)
    assert fed.fed.accounting().staked == 4 * stake


def test_advance_opens_round_one_once_min_peers_and_a_majority_of_founders_joined(fed: Harness) -> None:
    fed.fed.join(fed.members[0])
    fed.fed.advance(fed.members[0])
    assert fed.round == 0  # one member, min_peers is 2
    fed.fed.join(fed.members[1])
    fed.fed.advance(fed.members[0])
    assert fed.round == 0  # min_peers, but 2 of 4 founders are no majority
    fed.fed.join(fed.members[2])
    fed.fed.advance(fed.members[0])
    assert fed.round == 1
    assert fed.fed.round(1).eligible == 3


def test_join_needs_admission_and_happens_once(fed: Harness) -> None:
    outsider = funded(fed.chain, 1)[0]
    with pytest.raises(NotAdmitted):
        fed.fed.join(outsider)
    fed.fed.join(fed.members[0])
    with pytest.raises(AlreadyMember):
        fed.fed.join(fed.members[0])


def test_join_without_tokens_names_the_token_error(fed: Harness) -> None:
    member = fed.members[0]
    fed.token.transfer(member, fed.deployer.address, fed.token.balance_of(member.address))
    with pytest.raises(revert_class("ERC20InsufficientBalance")):
        fed.fed.join(member)


def test_majority_admits_a_candidate_who_joins_for_the_next_round(joined: Harness) -> None:
    candidate = funded(joined.chain, 1)[0]
    joined.token.transfer(joined.deployer, candidate.address, 1000 * 10**18)
    with pytest.raises(NotMember):
        joined.fed.approve_member(candidate, candidate.address)
    joined.fed.approve_member(joined.members[0], candidate.address)
    with pytest.raises(AlreadyApproved):
        joined.fed.approve_member(joined.members[0], candidate.address)
    joined.fed.approve_member(joined.members[1], candidate.address)
    assert not joined.fed.is_admitted(candidate.address)  # 2 of 4 is no majority
    joined.fed.approve_member(joined.members[2], candidate.address)
    assert joined.fed.is_admitted(candidate.address)
    with pytest.raises(AlreadyMember):
        joined.fed.approve_member(joined.members[3], candidate.address)
    joined.fed.join(candidate)
    with pytest.raises(NotEligible):
        joined.commit(candidate)  # joined during round 1
    joined.play()
    assert joined.fed.round(2).member_count == 5
    joined.commit(candidate)  # eligible from round 2


def test_add_stake_and_fund(joined: Harness) -> None:
    m = joined.members[0]
    before = joined.fed.member(m.address).stake
    joined.fed.add_stake(m, 5)
    assert joined.fed.member(m.address).stake == before + 5
    with pytest.raises(ZeroAmount):
        joined.fed.add_stake(m, 0)
    outsider = funded(joined.chain, 1)[0]
    with pytest.raises(NotMember):
        joined.fed.add_stake(outsider, 5)
    pool = joined.fed.accounting().pool
    joined.fed.fund(joined.deployer, 7)
    assert joined.fed.accounting().pool == pool + 7
    with pytest.raises(ZeroAmount):
        joined.fed.fund(joined.deployer, 0)


def test_leave_returns_stake_and_unblocks_the_commit_phase(joined: Harness) -> None:
    a, b, c, d = joined.members
    for m in (a, b, c):
        joined.commit(m)
    with pytest.raises(LeaveWhileCommitted):
        joined.fed.leave(a)
    balance = joined.token.balance_of(d.address)
    joined.fed.leave(d)
    assert joined.token.balance_of(d.address) == balance + joined.fed.config()["stake"]
    assert not joined.fed.member(d.address).active
    # d was the only eligible member yet to commit: its leaving moves the round on.
    assert joined.fed.round(joined.round).phase == Phase.REVEAL
    with pytest.raises(NotMember):
        joined.fed.leave(d)


def test_spec_and_contract_refuse_bad_configurations(chain: Chain) -> None:
    a = funded(chain, 1)[0]
    with pytest.raises(SpecError, match="listed twice"):
        spec_from_dict({"members": {"founders": [a.address, a.address]}})
    with pytest.raises(SpecError, match="quorum"):
        spec_from_dict({"chain": {"quorum": 0.5}, "members": {"founders": [a.address]}})
    with pytest.raises(SpecError, match="shorter than 10 blocks"):
        spec_from_dict({"chain": {"vote_window": 15, "block_time": 2}, "members": {"founders": [a.address]}})
    with pytest.raises(SpecError, match="supply"):
        spec_from_dict({"token": {"supply": 2**128}, "members": {"founders": [a.address]}})
    # The contract checks too, for deployments made without this tool.
    token, _ = deploy_contract(chain, a, "RewardToken", "T", "T", 10**24, a.address)
    for bad, why in (
        ((10**18, 0, 10, 10, 10, 5000, 2, 0), "quorum"),
        ((10**18, 0, 10, 10, 10, 6667, 0, 0), "minPeers"),
        ((10**18, 0, 10, 10, 10, 6667, 257, 0), "minPeers"),
        ((10**18, 2**128, 10, 10, 10, 6667, 2, 0), "rewardPerRound"),
    ):
        with pytest.raises(revert_class("InvalidConfig"), match=why):
            deploy_contract(chain, a, "Federation", token, b"\0" * 32, bad, [a.address])
    huge, _ = deploy_contract(chain, a, "RewardToken", "T", "T", 2**128, a.address)
    with pytest.raises(revert_class("InvalidConfig"), match="supply"):
        deploy_contract(chain, a, "Federation", huge, b"\0" * 32, (10**18, 0, 10, 10, 10, 6667, 2, 0), [a.address])


def test_founders_are_capped_at_the_member_limit(embedded: Chain) -> None:
    a = funded(embedded, 1)[0]
    cfg = (10**18, 0, 10, 10, 10, 6667, 2, 0)
    too_many = [to_checksum_address(f"0x{i:040x}") for i in range(1, 258)]
    token, _ = deploy_contract(embedded, a, "RewardToken", "T", "T", 10**24, a.address)
    with pytest.raises(revert_class("InvalidConfig"), match="founders"):
        deploy_contract(embedded, a, "Federation", token, b"\0" * 32, cfg, too_many)


def test_the_257th_member_is_refused(embedded: Chain) -> None:
    """Embedded only: 256 members join (about 800 transactions), then one more is admitted."""
    h = Harness.create(embedded, founders=256)
    h.join_all()
    assert len(h.fed.members()) == 256
    candidate = funded(embedded, 1)[0]
    h.token.transfer(h.deployer, candidate.address, 1000 * 10**18)
    for m in h.members[:129]:
        h.fed.approve_member(m, candidate.address)
    assert h.fed.is_admitted(candidate.address)
    with pytest.raises(revert_class("MembershipFull")):
        h.fed.join(candidate)


def test_a_spec_written_as_toml_hashes_the_same(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {
            "members": {"founders": ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]},
            "data": {"numeric": {"age": [40.5, 10.25]}, "categorical": {"job": ["a", 'b " c']}},
            "model": {"kind": "mlp", "hidden": 8},
        }
    )
    path = tmp_path / "spec.toml"
    path.write_text(spec.to_toml())
    assert load_spec(path).hash == spec.hash
