"""VerticalTask: escrow, alignment, epochs, timeouts and payout of a cross-domain task.

Every member may be an attacker: the owner trying to take the bounty back once
training started or to keep it by valuing everyone at zero, a party claiming
twice, outsiders posting messages or timing out the punctual.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount

from ledger.chain import Chain
from ledger.client import TokenClient
from ledger.deploy import deploy_contract
from ledger.errors import ContractRevert, revert_class
from ledger.vertical import Kind, Stage, TaskTerms, VerticalTaskClient, deploy_task
from tests.harness import funded

NotOwner = revert_class("NotOwner")
NotParty = revert_class("NotParty")
WrongStage = revert_class("WrongStage")
AlreadyDone = revert_class("AlreadyDone")
TooEarly = revert_class("TooEarly")
WrongIntersection = revert_class("WrongIntersection")
WrongEpoch = revert_class("WrongEpoch")
BadShares = revert_class("BadShares")
NothingToTimeOut = revert_class("NothingToTimeOut")
NothingOwed = revert_class("NothingOwed")
UnknownRecipient = revert_class("UnknownRecipient")
BadParameter = revert_class("BadParameter")

UNIT = 10**18
TERMS = TaskTerms(bounty=900 * UNIT, stake=100 * UNIT, epochs=2, min_intersection=10, window=60, slash_bps=5_000)
ROOT = b"\x11" * 32
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # a CIDv1 (59 characters)
KEY = b"\x44" * 32  # an X25519 public key


@dataclass
class Task:
    chain: Chain
    owner: LocalAccount
    parties: list[LocalAccount]
    outsider: LocalAccount
    token: TokenClient
    task: VerticalTaskClient

    def balance(self, who: LocalAccount) -> int:
        return self.token.balance_of(who.address)

    def claim_all(self) -> None:
        for a in (self.owner, *self.parties):
            if self.task.owed(a.address):
                self.task.claim(a)

    def open(self) -> None:
        """Funded and joined: aligning."""
        self.task.fund(self.owner, KEY)
        for p in self.parties:
            self.task.join(p, KEY)

    def aligned(self, size: int = 50) -> None:
        self.open()
        self.task.align(self.owner, size, ROOT)
        for p in self.parties:
            self.task.confirm(p, size)

    def epoch(self, members: list[LocalAccount] | None = None) -> None:
        e = self.task.epoch()
        for m in members if members is not None else [self.owner, *self.parties]:
            self.task.commit_epoch(m, e, ROOT)


def _task(chain: Chain, n: int = 3, terms: TaskTerms = TERMS) -> Task:
    owner, *parties, outsider = funded(chain, n + 2)
    token_address, _ = deploy_contract(chain, owner, "RewardToken", "T", "T", 10**6 * UNIT, owner.address)
    token = TokenClient(chain, token_address)
    for p in parties:
        token.transfer(owner, p.address, terms.stake)
    task, _ = deploy_task(chain, owner, token_address, b"\x22" * 32, [p.address for p in parties], terms)
    return Task(chain, owner, parties, outsider, token, task)


@pytest.fixture
def t(chain: Chain) -> Task:
    return _task(chain)


def test_a_task_runs_from_escrow_to_payout_by_shares(t: Task) -> None:
    before = {a.address: t.balance(a) for a in (t.owner, *t.parties)}
    t.task.fund(t.owner, KEY)
    assert t.task.stage() == Stage.OPEN
    for p in t.parties:
        t.task.join(p, KEY)
    assert t.task.stage() == Stage.ALIGNING
    t.task.post(t.parties[0], t.owner.address, Kind.PSI, 0, 0, b"\x01" * 32, CID)
    t.task.align(t.owner, 50, ROOT)
    for p in t.parties:
        t.task.confirm(p, 50)
    assert t.task.stage() == Stage.TRAINING
    t.epoch()
    assert (t.task.stage(), t.task.epoch()) == (Stage.TRAINING, 1)
    t.epoch()
    assert t.task.stage() == Stage.VALUING
    t.task.settle(t.owner, b"\x33" * 32, CID, [6_000, 3_000, 1_000])
    assert t.task.stage() == Stage.PAID
    t.claim_all()
    gains = [t.balance(p) - before[p.address] for p in t.parties]
    assert gains == [540 * UNIT, 270 * UNIT, 90 * UNIT]  # shares of the bounty; stakes came back
    assert t.balance(t.owner) == before[t.owner.address] - TERMS.bounty
    assert t.token.balance_of(t.task.address) == 0
    logged = t.task.events("Message")
    assert [(e["args"]["kind"], e["args"]["cid"]) for e in logged] == [(int(Kind.PSI), CID)]
    settled = t.task.events("Settled")[0]["args"]
    assert list(settled["shares"]) == [6_000, 3_000, 1_000]


def test_the_owner_cannot_keep_the_bounty_by_valuing_everyone_at_zero(t: Task) -> None:
    t.aligned()
    t.epoch()
    t.epoch()
    for shares in ([0, 0, 0], [5_000, 4_999, 0], [10_000, 1, 0], [9_000, 1_000]):
        with pytest.raises(BadShares):
            t.task.settle(t.owner, ROOT, "", shares)
    with pytest.raises(NotOwner):
        t.task.settle(t.parties[0], ROOT, "", [10_000, 0, 0])


def test_the_bounty_cannot_be_taken_back_once_training_started(t: Task) -> None:
    t.aligned()
    with pytest.raises(WrongStage):
        t.task.cancel(t.owner)
    with pytest.raises(ContractRevert):  # only the owner may fund, and only once
        t.task.fund(t.owner, KEY)


def test_the_owner_may_cancel_before_training_and_everyone_is_refunded(t: Task) -> None:
    before = {a.address: t.balance(a) for a in (t.owner, *t.parties)}
    t.open()
    t.task.align(t.owner, 50, ROOT)
    t.task.cancel(t.owner)
    assert t.task.stage() == Stage.CANCELLED
    t.claim_all()
    assert {a.address: t.balance(a) for a in (t.owner, *t.parties)} == before


def test_an_intersection_below_the_minimum_cancels_the_task(t: Task) -> None:
    t.open()
    t.task.align(t.owner, TERMS.min_intersection - 1, ROOT)
    assert t.task.stage() == Stage.CANCELLED
    assert t.task.owed(t.owner.address) == TERMS.bounty


def test_a_party_must_confirm_the_posted_intersection_or_leave_with_its_stake(t: Task) -> None:
    t.open()
    with pytest.raises(revert_class("NotAligned")):
        t.task.confirm(t.parties[0], 50)
    t.task.align(t.owner, 50, ROOT)
    with pytest.raises(WrongIntersection):
        t.task.confirm(t.parties[0], 49)
    t.task.confirm(t.parties[0], 50)
    t.task.confirm(t.parties[1], 50)
    t.task.leave(t.parties[2])  # disagrees: leaves whole, and training starts without it
    assert t.task.stage() == Stage.TRAINING
    assert t.task.owed(t.parties[2].address) == TERMS.stake
    with pytest.raises(NotParty):
        t.task.commit_epoch(t.parties[2], 0, ROOT)


def test_outsiders_cannot_join_post_or_commit(t: Task) -> None:
    with pytest.raises(NotParty):
        t.task.join(t.outsider, KEY)
    t.aligned()
    with pytest.raises(NotParty):
        t.task.post(t.outsider, t.owner.address, Kind.EMBEDDING, 0, 0, ROOT, CID)
    with pytest.raises(UnknownRecipient):
        t.task.post(t.parties[0], t.outsider.address, Kind.EMBEDDING, 0, 0, ROOT, CID)
    with pytest.raises(UnknownRecipient):
        t.task.post(t.parties[0], t.parties[0].address, Kind.EMBEDDING, 0, 0, ROOT, CID)
    for cid in ("x", "Qm" + "Z" * 43, "b" * 101):  # too short for any CID, or longer than a sha2-256 one
        with pytest.raises(BadParameter):
            t.task.post(t.parties[0], t.owner.address, Kind.EMBEDDING, 0, 0, ROOT, cid)
    t.task.post(t.parties[0], t.owner.address, Kind.EMBEDDING, 0, 0, ROOT, "Qm" + "Z" * 44)
    with pytest.raises(NotParty):
        t.task.commit_epoch(t.outsider, 0, ROOT)


def test_epochs_are_committed_once_each_in_order(t: Task) -> None:
    t.aligned()
    t.task.commit_epoch(t.parties[0], 0, ROOT)
    with pytest.raises(AlreadyDone):
        t.task.commit_epoch(t.parties[0], 0, ROOT)
    with pytest.raises(WrongEpoch):
        t.task.commit_epoch(t.parties[1], 1, ROOT)
    assert t.task.epoch() == 0


@pytest.mark.timetravel
def test_a_silent_party_is_timed_out_slashed_and_the_task_goes_on_without_it(t: Task) -> None:
    t.aligned()
    t.epoch([t.owner, *t.parties[:2]])
    with pytest.raises(TooEarly):
        t.task.timeout(t.outsider, t.parties[2].address)
    t.chain.advance_time(TERMS.window + 1)
    with pytest.raises(NothingToTimeOut):  # the punctual cannot be timed out
        t.task.timeout(t.outsider, t.parties[0].address)
    t.task.timeout(t.outsider, t.parties[2].address)
    assert t.task.epoch() == 1 and t.task.party(t.parties[2].address).dropped
    slashed = TERMS.stake * TERMS.slash_bps // 10_000
    assert t.task.pool() == TERMS.bounty + slashed
    t.epoch([t.owner, *t.parties[:2]])
    assert t.task.stage() == Stage.VALUING
    with pytest.raises(BadShares):  # a dropped party gets nothing
        t.task.settle(t.owner, ROOT, "", [5_000, 4_000, 1_000])
    t.task.settle(t.owner, ROOT, "", [5_000, 5_000, 0])
    assert t.task.owed(t.parties[0].address) == (TERMS.bounty + slashed) // 2 + TERMS.stake
    assert t.task.owed(t.parties[2].address) == TERMS.stake - slashed


@pytest.mark.timetravel
def test_an_owner_silent_after_training_started_forfeits_the_pool_to_the_parties(t: Task) -> None:
    t.aligned()
    t.epoch(t.parties)
    t.chain.advance_time(TERMS.window + 1)
    t.task.timeout(t.parties[0], t.owner.address)
    assert t.task.stage() == Stage.PAID
    owed = [t.task.owed(p.address) for p in t.parties]
    assert sum(owed) == TERMS.bounty + 3 * TERMS.stake
    assert max(owed) - min(owed) <= 2


@pytest.mark.timetravel
def test_an_owner_silent_in_valuation_forfeits_the_pool(t: Task) -> None:
    t.aligned()
    t.epoch()
    t.epoch()
    t.chain.advance_time(TERMS.window + 1)
    t.task.timeout(t.outsider, t.owner.address)
    assert t.task.stage() == Stage.PAID
    assert t.task.owed(t.owner.address) == 0


@pytest.mark.timetravel
def test_anyone_cancels_a_task_left_open_past_its_window(t: Task) -> None:
    t.task.fund(t.owner, KEY)
    t.task.join(t.parties[0], KEY)
    with pytest.raises(TooEarly):
        t.task.cancel(t.parties[0])
    t.chain.advance_time(TERMS.window + 1)
    t.task.cancel(t.parties[0])
    assert t.task.owed(t.parties[0].address) == TERMS.stake
    assert t.task.owed(t.owner.address) == TERMS.bounty


def test_claims_pay_once(t: Task) -> None:
    t.open()
    t.task.cancel(t.owner)
    t.task.claim(t.parties[0])
    with pytest.raises(NothingOwed):
        t.task.claim(t.parties[0])


def test_deployment_parameters_are_checked(embedded: Chain) -> None:
    owner, party = funded(embedded, 2)
    token, _ = deploy_contract(embedded, owner, "RewardToken", "T", "T", UNIT, owner.address)
    for parties, terms in (
        ([], TERMS),
        ([party.address] * 2, TERMS),
        ([owner.address], TERMS),
        ([funded(embedded, 1)[0].address for _ in range(9)], TERMS),
        ([party.address], TaskTerms(0, 1, 1, 1, 1, 0)),
        ([party.address], TaskTerms(1, 1, 0, 1, 1, 0)),
        ([party.address], TaskTerms(1, 1, 1, 1, 1, 10_001)),
        ([party.address], TaskTerms(1, 1, 1, 1, 31 * 86_400, 0)),  # a window that could lock the funds
    ):
        with pytest.raises(BadParameter):
            deploy_task(embedded, owner, token, ROOT, parties, terms)


def test_every_member_registers_an_encryption_key_and_none_is_zero(t: Task) -> None:
    with pytest.raises(BadParameter):
        t.task.fund(t.owner, bytes(32))
    with pytest.raises(BadParameter):
        t.task.join(t.parties[0], bytes(32))
    t.task.fund(t.owner, b"\x01" * 32)
    t.task.join(t.parties[0], b"\x02" * 32)
    assert t.task.encryption_key(t.owner.address) == b"\x01" * 32
    assert t.task.encryption_key(t.parties[0].address) == b"\x02" * 32
    assert t.task.encryption_key(t.parties[1].address) == bytes(32)
    assert t.task.events("Joined")[0]["args"]["key"] == b"\x02" * 32


@pytest.mark.timetravel
def test_a_party_timed_out_before_training_keeps_its_stake(t: Task) -> None:
    """In Aligning a party may be waiting on the owner's alignment: dropped, never slashed."""
    t.open()
    t.task.align(t.owner, 50, ROOT)
    t.task.confirm(t.parties[0], 50)
    t.task.confirm(t.parties[1], 50)
    t.chain.advance_time(TERMS.window + 1)
    t.task.timeout(t.owner, t.parties[2].address)
    assert t.task.stage() == Stage.TRAINING and t.task.pool() == TERMS.bounty
    assert t.task.owed(t.parties[2].address) == TERMS.stake


@pytest.mark.timetravel
def test_the_owner_never_gains_from_a_slashing(t: Task) -> None:
    """Every party dropped in training: the owner gets its bounty back, the slashed stakes are burned."""
    t.aligned()
    t.epoch([t.owner])
    t.chain.advance_time(TERMS.window + 1)
    for p in t.parties:
        t.task.timeout(t.owner, p.address)
    assert t.task.stage() == Stage.TRAINING and t.task.epoch() == 1
    t.epoch([t.owner])
    t.task.settle(t.owner, ROOT, CID, [0, 0, 0])
    slashed = 3 * TERMS.stake * TERMS.slash_bps // 10_000
    assert t.task.owed(t.owner.address) == TERMS.bounty
    assert t.task.burned() == slashed
    balance = t.token.balance_of(t.task.address)
    t.claim_all()
    assert t.token.balance_of(t.task.address) == balance - TERMS.bounty - 3 * (TERMS.stake - slashed // 3) == slashed


@pytest.mark.timetravel
def test_once_paid_only_the_owner_queries_parties_still_in_and_only_they_reply(t: Task) -> None:
    t.aligned()
    t.epoch([t.owner, *t.parties[:2]])
    t.chain.advance_time(TERMS.window + 1)
    t.task.timeout(t.outsider, t.parties[2].address)  # dropped: no longer asked, cannot answer
    for kind in (Kind.QUERY, Kind.REPLY):  # scoring kinds are not training messages
        with pytest.raises(BadParameter):
            t.task.post(t.parties[0], t.owner.address, kind, 0, 0, ROOT, CID)
    t.epoch([t.owner, *t.parties[:2]])
    with pytest.raises(WrongStage):  # valuing: nobody posts
        t.task.post(t.owner, t.parties[0].address, Kind.QUERY, 0, 0, ROOT, CID)
    t.task.settle(t.owner, ROOT, "", [5_000, 5_000, 0])
    assert t.task.stage() == Stage.PAID
    t.task.post(t.owner, t.parties[0].address, Kind.QUERY, 0, 0, ROOT, CID)
    t.task.post(t.parties[0], t.owner.address, Kind.REPLY, 0, 0, ROOT, CID)
    refused = [
        (NotParty, t.owner, t.parties[2].address, Kind.QUERY),  # dropped
        (NotParty, t.owner, t.outsider.address, Kind.QUERY),
        (BadParameter, t.owner, t.parties[0].address, Kind.EMBEDDING),  # training kinds are over
        (BadParameter, t.owner, t.parties[0].address, Kind.REPLY),
        (BadParameter, t.parties[0], t.owner.address, Kind.QUERY),  # a party cannot query
        (UnknownRecipient, t.parties[0], t.parties[1].address, Kind.REPLY),  # nor reply to another party
        (NotParty, t.parties[2], t.owner.address, Kind.REPLY),
        (NotParty, t.outsider, t.owner.address, Kind.REPLY),
    ]
    for error, sender, to, kind in refused:
        with pytest.raises(error):
            t.task.post(sender, to, kind, 0, 0, ROOT, CID)
    with pytest.raises(BadParameter):
        t.task.post(t.owner, t.parties[0].address, Kind.QUERY, 0, 0, ROOT, "x")
    logged = [(e["args"]["kind"], e["args"]["from"]) for e in t.task.events("Message")]
    assert logged == [(int(Kind.QUERY), t.owner.address), (int(Kind.REPLY), t.parties[0].address)]
