"""Protocol invariants over random sequences of honest steps, mistakes and attacks.

Runs on the embedded chain (hypothesis needs many examples; anvil runs the
hand-written suite). Seven founders: five honest, and a fixed minority of two
(below a third) that attacks; honest members never leave. Each example plays a
random list of actions, weighted so that honest steps dominate and rounds do reach
their end ("honest": one member's next step; "everyone": every member's, the
minority playing along up to the vote), mixed with bad ones (double acts, wrong
salts, split votes, outsiders, timeouts) and the minority's attacks
(tests/ledger/test_attacks.py plays each one alone):
- odd-cid: it reveals or votes with an oversized, malformed or well-formed garbage
  CID (honest members always vote with the harness CID);
- approve / leave / rejoin: it pushes an outsider candidate by approving it,
  leaving (approvals lapse) and rejoining once the others readmit it;
- abstain: it commits and reveals, and never votes;
- join-race: double and unadmitted joins, interleaved with founders' first joins.
After every action:
- tokens are conserved: the contract holds stakes + pool + unclaimed rewards, and
  stakes + pool + unclaimed + claimed moves only by what joins, top-ups and leaves move;
- a closed round (finalized or failed) never changes;
- no round outlives its last deadline (opened + commit + reveal + 2 vote windows):
  past it the round reads closed, and an advance sent past it closes it;
- a malformed CID never enters; the minority's candidate is never admitted, and
  never holds a majority of approvals; foundersPending counts the founders that
  never joined, activeFounders those who are members, and round 1 opens only
  while a majority of the founders are members; non-members' acts revert.
When the sequence ends, the events show that every actor was a member (and
eligible) when it acted; nobody acted twice in a round or approved twice in an
epoch; every admission had a majority, at most MAX_ADMISSIONS_PER_ROUND a round;
the first transaction past a round's last deadline closed it; every act fell in its
window; every finalized proposal had its quorum (a garbage CID only on its senders'
votes), and a round whose revealers backed the honest proposal by more than two
thirds never failed for want of one (abstainers cannot stall it); exactly the silent
committers and revealers were slashed, and only voters were paid.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.chain import embedded_chain
from ledger.client import proposal_id
from ledger.errors import ContractRevert
from ledger.types import FailReason, MemberStatus, Phase, Proposal, RoundInfo
from tests.harness import CID, Harness, funded

FOUNDERS = 7
HONEST = 5  # members[:5] are honest; members[5:], two of seven, are the attacking minority
MODELS = (b"\x0a" * 32, b"\x0b" * 32)
WINDOW = 300  # the commit and reveal windows, and a long wait
VOTE_WINDOW = 2 * WINDOW  # the vote window, and the finalize window after it: one long wait never skips it
# A round's last deadline after it opens: its commit and reveal windows, or (a round opened on the vote of the
# one before) the end of that round's vote and finalize windows, whichever is later; then its own two.
LAST_DEADLINE = max(2 * WINDOW, 2 * VOTE_WINDOW) + 2 * VOTE_WINDOW
BPS = 10_000
CLOSED = (Phase.FINALIZED, Phase.FAILED)
# (cid, well formed): oversized, malformed, and well-formed garbage with nothing behind it
ODD_CIDS = (
    ("b" * 101, False),
    ("b" * 4096, False),
    ("Qm" + "x" * 20, False),
    ("x" * 59, False),
    ("", False),
    ("b" + "a" * 58, True),
    ("Qm" + "Z" * 44, True),
    ("b" + "q" * 99, True),
)
ACTIONS = ["honest"] * 6 + ["everyone"] * 7 + ["join", "advance", "commit", "reveal", "bad-reveal", "vote"]
ACTIONS += ["split-vote", "finalize", "short-wait", "sleep", "long-wait", "claim", "outsider"]
ACTIONS += ["odd-cid", "approve", "leave", "rejoin", "abstain"] * 2 + ["join-race"]
# Events of calls that apply no pending timeout: a transaction with only these may leave a round open.
NO_SYNC = {"FederationCreated", "StakeAdded", "PoolFunded", "Claimed"}


def _err(fn: Callable[..., Any], *args: Any) -> str | None:
    """None if the call went through, else the name of the contract error it reverted with."""
    try:
        fn(*args)
    except ContractRevert as exc:
        return exc.error_name
    return None


def _ok(fn: Callable[..., Any], *args: Any) -> bool:
    return _err(fn, *args) is None


def _well_formed(cid: str) -> bool:
    """What the contract lets in: 46 to 100 bytes, "b..." (CIDv1, base32) or "Qm..." (CIDv0)."""
    return 46 <= len(cid.encode()) <= 100 and cid.startswith(("b", "Qm"))


def _count(stats: Counter[str], name: str) -> str:
    return f"{name}: {min(stats[name], 2)}{'+' if stats[name] >= 2 else ''}"


@dataclass(frozen=True)
class Log:
    name: str
    args: dict[str, Any]
    time: int
    tx: bytes


@dataclass
class RoundLog:
    """One round as its events tell it."""

    opened: int
    member_count: int
    acts: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))  # kind: (member, time)
    ballots: dict[str, bytes] = field(default_factory=dict)  # voter: proposal
    cids: dict[bytes, str] = field(default_factory=dict)  # proposal: its CID
    slashed: set[str] = field(default_factory=set)
    credited: set[str] = field(default_factory=set)
    close: Log | None = None
    voting: bool = False  # it entered its vote (and the next round opened)

    def members(self, kind: str) -> set[str]:
        return {m for m, _ in self.acts[kind]}


class Run:
    def __init__(self, early: list[int]) -> None:
        chain = embedded_chain()
        h = self.h = Harness.create(
            chain, founders=FOUNDERS, commit_window=WINDOW, reveal_window=WINDOW, vote_window=VOTE_WINDOW
        )
        cfg = h.fed.config()
        self.stake, self.quorum, self.min_peers = cfg["stake"], cfg["quorum_bps"], cfg["min_peers"]
        self.honest_members, self.attackers = h.members[:HONEST], h.members[HONEST:]
        self.outsider, self.candidate = funded(chain, 2)
        h.token.transfer(h.deployer, self.candidate.address, 10 * self.stake)  # could it join, it would
        self.total = self._total()
        self.closed: dict[int, RoundInfo] = {}
        self.proposals: dict[bytes, Proposal] = {}  # every proposal the test voted for, by id
        self.stats: Counter[str] = Counter()
        self.checked_block = -1
        for i in early:
            self._join(h.members[i])

    # -- helpers -----------------------------------------------------------------------------

    def _total(self) -> int:
        acc = self.h.fed.accounting()
        return acc.staked + acc.pool + acc.unclaimed + acc.claimed

    def _view(self, name: str, *args: Any) -> Any:
        """A contract view as the next transaction finds it: at the pending block's timestamp, not the latest's."""
        return getattr(self.h.fed.contract.functions, name)(*args).call(block_identifier="pending")

    def _phase(self, r: int) -> Phase:
        return Phase(self._view("phaseOf", r)) if r else Phase.NONE

    def _voting(self, r: int) -> int:
        """The round in its vote while round `r` is open (r - 1), or 0."""
        return r - 1 if r > 1 and self.h.fed.round(r - 1).phase == Phase.VOTE else 0

    def _honest(self, r: int) -> Proposal:
        """What honest members vote for in round `r`."""
        p = Proposal(MODELS[0], CID, [10] * self.h.fed.round(r).member_count)
        self.proposals[proposal_id(p.model_hash, p.model_cid, p.scores)] = p
        return p

    def _listed(self, m: LocalAccount) -> bool:
        return m.address in self.h.fed.members()

    def _join(self, m: LocalAccount) -> bool:
        if _ok(self.h.fed.join, m):
            self.total += self.stake
            return True
        return False

    def _top_up(self, m: LocalAccount) -> None:
        info = self.h.fed.member(m.address)
        if info.active and info.stake < self.stake and _ok(self.h.fed.add_stake, m, self.stake - info.stake):
            self.total += self.stake - info.stake

    def _vote(self, m: LocalAccount, r: int, model: bytes, cid: str) -> str | None:
        scores = [10] * (self.h.fed.round(r).member_count if r else 0)
        self.proposals[proposal_id(model, cid, scores)] = Proposal(model, cid, scores)
        return _err(self.h.fed.vote, m, max(r, 1), model, cid, scores)

    def _finalize(self, m: LocalAccount, r: int) -> bool:
        """Finalize on the leading proposal (known: the test cast every vote; no log scan)."""
        return _ok(self.h.fed.finalize, m, max(r, 1), self._winner(r) if r else Proposal(MODELS[0], CID, []))

    def _advance(self, who: LocalAccount) -> None:
        """Anyone may advance; it applies every pending timeout, so after it no round is past its last deadline."""
        h, before = self.h, self.h.round
        assert _ok(h.fed.advance, who)
        r, now = h.round, h.chain.now()
        if r:
            info = h.fed.round(r)
            assert now < info.opened_at + LAST_DEADLINE
            # a round closed on its own waits for the one before to end its vote; then the next opens
            assert info.phase not in CLOSED or self._voting(r) == r - 1
        pending = h.fed.founders_pending() if before == 0 and r == 1 else 0
        if pending:  # round 1 opened early: a majority of the founders are in, and min_peers members
            assert h.fed.active_founders() * 2 > FOUNDERS and self._view("activeMembers") >= self.min_peers

    # -- the honest members ------------------------------------------------------------------

    def step(self, m: LocalAccount, r: int, phase: Phase) -> bool:
        """Honest member `m`'s next step in open round `r`, now in `phase`, if it has one; whether it acted.
        A revealer of the round in its vote (r - 1) votes inside its round r commit, or alone if it cannot
        commit; its round r reveal carries round r - 1's proposal when that round can be finalized."""
        h = self.h
        if r == 0:
            return not self._listed(m) and self._join(m)
        status, v = h.fed.status(r, m.address), self._voting(r)
        if v and h.fed.status(v, m.address) == MemberStatus.REVEALED and self._phase(v) == Phase.VOTE:
            p = self._honest(v)
            if phase == Phase.COMMIT and status == MemberStatus.NONE:
                self._top_up(m)
                if _ok(h.commit, m, r, None, proposal_id(p.model_hash, p.model_cid, p.scores)):
                    return True
            return self._vote(m, v, MODELS[0], CID) is None
        if phase == Phase.COMMIT and status == MemberStatus.NONE:
            self._top_up(m)
            return _ok(h.commit, m, r)
        if phase == Phase.REVEAL and status == MemberStatus.COMMITTED:
            return _ok(h.reveal, m, r, self._winner(v) if v and self._view("canFinalize", v) else None)
        return False

    def _winner(self, r: int) -> Proposal:
        winner = self.h.fed.round(r).winner
        return self.proposals.get(winner, Proposal(MODELS[0], CID, []))

    def settle(self, m: LocalAccount, r: int) -> None:
        """What is left when no honest member has a step in open round `r`: finalize the round before,
        close one, or wait."""
        phase, v = self._phase(r), self._voting(r)
        if v and self._view("canFinalize", v):
            assert self._finalize(m, v) or not self._view("canFinalize", v)  # or its window closed meanwhile
        elif phase in (Phase.NONE, *CLOSED) and not (v and self._phase(v) == Phase.VOTE):
            self._advance(m)
        else:
            self.h.chain.advance_time(WINDOW)  # nothing to do but wait for the next deadline

    def honest(self, r: int, first: int, everyone: bool) -> None:
        """The next step of the first honest member (from member `first` on) who has one; or every member's
        next step, the minority's too (it plays along up to the vote)."""
        phase, acted = self._phase(r), False
        for k in range(HONEST):
            if self.step(self.honest_members[(first + k) % HONEST], r, phase):
                if not everyone:
                    return
                r = self.h.round  # a step may end the phase, or the round (a vote that leaves no quorum)
                phase, acted = self._phase(r), True
        if everyone:
            for a in self.attackers:
                self.abstain(self.h.round, a)
        if not acted:
            self.settle(self.honest_members[first], self.h.round)

    # -- the minority's attacks --------------------------------------------------------------

    def odd_cid(self, r: int, a: LocalAccount, variant: int) -> None:
        """Reveal or vote with an odd CID: a malformed one never enters."""
        h = self.h
        cid, well_formed = ODD_CIDS[variant]
        phase = self._phase(r)
        if phase == Phase.REVEAL and h.fed.status(r, a.address) == MemberStatus.COMMITTED:
            content, salt = h.secrets[(r, a.address)]
            err = _err(h.fed.reveal, a, r, content, cid, salt)
            if not well_formed:
                assert err is not None  # and it is InvalidCid, unless the reveal window just closed
                assert err == "InvalidCid" or self._phase(r) != Phase.REVEAL, err
            else:
                assert err is None or self._phase(r) != Phase.REVEAL, err
        elif (v := self._voting(r)) and self._phase(v) == Phase.VOTE:
            err = self._vote(a, v, MODELS[0], cid)
            if err == "VoteWindowClosed":  # past the vote deadline: in the finalize window of a winner
                assert self._view("canFinalize", v)
            elif not well_formed:
                assert err is not None
                assert err == "InvalidCid" or self._phase(v) != Phase.VOTE, err
            elif err is None:
                self.stats["garbage vote"] += 1
        else:
            err = self._vote(a, r, MODELS[0], cid)
            if not well_formed:
                assert err is not None
            elif err is None:  # round r's reveal window had passed: the vote itself moved it into its vote
                assert self._phase(r) == Phase.VOTE  # (lazy transitions) and counted there, as it should

    def approve(self, a: LocalAccount) -> None:
        err = _err(self.h.fed.approve_member, a, self.candidate.address)
        if not self.h.fed.member(a.address).active:
            assert err == "NotMember", err
        else:  # never AdmissionLimit: that would mean this approval admitted the candidate
            assert err in (None, "AlreadyApproved"), err
        approvals = self.h.fed.approvals(self.candidate.address)
        self.stats["candidate approvals"] = max(self.stats["candidate approvals"], approvals)

    def leave(self, a: LocalAccount) -> None:
        stake, held = self.h.fed.member(a.address).stake, self.h.token.balance_of(a.address)
        err = _err(self.h.fed.leave, a)
        if err is None:  # it gets its stake back, less what closing a round in the same call slashed
            returned = self.h.token.balance_of(a.address) - held
            assert returned <= stake and self.h.fed.member(a.address).stake == 0
            self.total -= returned
            assert self.h.fed.approvals(self.candidate.address) == 0  # every pending approval lapsed
            assert not self.h.fed.is_admitted(a.address)
            self.stats["left"] += 1
        else:
            assert err in ("NotMember", "LeaveWhileCommitted"), err

    def rejoin(self, a: LocalAccount) -> None:
        """Come back: a leaver must be admitted again (the others readmit it, as they would anyone)."""
        h = self.h
        if h.fed.member(a.address).active:
            assert _err(h.fed.join, a) == "AlreadyMember"
            return
        listed = self._listed(a)
        if not h.fed.is_admitted(a.address):
            assert _err(h.fed.join, a) == "NotAdmitted"
            for m in [*self.attackers, *self.honest_members]:
                if m is not a and not h.fed.is_admitted(a.address):
                    _ok(h.fed.approve_member, m, a.address)
        if self._join(a) and listed:
            self.stats["rejoined"] += 1

    def abstain(self, r: int, a: LocalAccount) -> None:
        """Take part in open round `r` up to its vote, then stay silent."""
        h = self.h
        if not h.fed.member(a.address).active:
            self._join(a)  # a founder's first join; a leaver needs "rejoin"
            return
        phase = self._phase(r)
        if phase == Phase.COMMIT:
            self._top_up(a)
            _ok(h.commit, a, r)
        elif phase == Phase.REVEAL and h.fed.status(r, a.address) == MemberStatus.COMMITTED:
            assert _ok(h.reveal, a, r) or self._phase(r) != Phase.REVEAL

    def join_race(self, m: LocalAccount) -> None:
        """Joins that must not count (twice, or unadmitted), then member `m`'s own first join if it has one."""
        h = self.h
        assert _err(h.fed.join, self.outsider) == "NotAdmitted"
        assert _err(h.fed.join, self.candidate) == "NotAdmitted"
        pending, r, active = h.fed.founders_pending(), h.round, h.fed.member(m.address).active
        if active:
            assert _err(h.fed.join, m) == "AlreadyMember"
        elif not self._listed(m):  # a founder's first join counts once; the last one opens round 1
            assert self._join(m)
            assert h.fed.founders_pending() == pending - 1
            opens = pending == 1 and h.fed.active_founders() * 2 > FOUNDERS
            assert (r == 0 and h.round == 1) == (r == 0 and opens)
            return
        elif not h.fed.is_admitted(m.address):
            assert _err(h.fed.join, m) == "NotAdmitted"
        assert h.fed.founders_pending() == pending

    # -- one step ----------------------------------------------------------------------------

    def act(self, action: str, i: int, variant: int) -> None:
        h, r, m = self.h, self.h.round, self.h.members[i]
        voter = self.honest_members[i % HONEST]
        # the minority member who acts: the one from i on (of two) for whom the attack means most
        attackers = [self.attackers[(i + k) % len(self.attackers)] for k in range(len(self.attackers))]
        attacker = attackers[0]
        if action == "odd-cid" and r:
            v = self._voting(r)
            attacker = next(
                (
                    a
                    for a in attackers
                    if h.fed.status(r, a.address) == MemberStatus.COMMITTED
                    or (v and h.fed.status(v, a.address) == MemberStatus.REVEALED)
                ),
                attacker,
            )
        elif action == "rejoin":
            attacker = next((a for a in attackers if not h.fed.member(a.address).active), attacker)
        elif action == "leave" and r:
            attacker = next((a for a in attackers if h.fed.status(r, a.address) == MemberStatus.NONE), attacker)
        if action in ("honest", "everyone"):
            self.honest(r, i % HONEST, everyone=action == "everyone")
        elif action == "join":
            self._join(m)
        elif action == "advance":
            self._advance(m)
        elif action == "commit":
            _ok(h.commit, m, r)
        elif action == "reveal":
            _ok(h.reveal, m, r) if (r, m.address) in h.secrets else None
        elif action == "bad-reveal":
            content = h.secrets.get((r, m.address), (os.urandom(32), b""))[0]
            assert not _ok(h.fed.reveal, m, r, content, CID, os.urandom(32))
        elif action in ("vote", "split-vote"):
            self._vote(voter, max(r - 1, 0), MODELS[action == "split-vote"], CID)
        elif action == "finalize":
            self._finalize(m, max(r - 1, 0))
        elif action in ("short-wait", "sleep"):
            h.chain.advance_time(30 if action == "short-wait" else WINDOW)
        elif action == "long-wait":
            h.chain.advance_time(WINDOW)
            self._advance(self.outsider)
        elif action == "claim":
            _ok(h.fed.claim, m)
        elif action == "outsider":
            o = self.outsider
            assert not _ok(h.fed.commit, o, max(r, 1), os.urandom(32))
            assert not _ok(h.fed.reveal, o, max(r, 1), b"\x01" * 32, CID, b"\x02" * 32, None)
            assert self._vote(o, r, MODELS[0], CID) is not None
            assert not _ok(h.fed.approve_member, o, o.address)
        elif action == "odd-cid":
            self.odd_cid(r, attacker, variant)
        elif action == "approve":
            self.approve(attacker)
        elif action == "leave":
            self.leave(attacker)
        elif action == "rejoin":
            self.rejoin(attacker)
        elif action == "abstain":
            for a in self.attackers:
                self.abstain(r, a)
        elif action == "join-race":
            self.join_race(m)
        else:
            raise AssertionError(action)

    def check_step(self) -> None:
        h, r = self.h, self.h.round
        latest = h.chain.w3.eth.get_block("latest")
        block, now = int(latest["number"]), int(latest["timestamp"])
        if r and now >= h.fed.round(r).opened_at + LAST_DEADLINE:
            assert h.fed.phase(r) in CLOSED  # the next transaction closes it
        if block == self.checked_block or (block == self.checked_block + 1 and not latest["transactions"]):
            self.checked_block = block  # no transaction since the last check: only time moved
            return
        self.checked_block = block
        acc = h.fed.accounting()
        assert acc.held == acc.staked + acc.pool + acc.unclaimed
        assert acc.staked + acc.pool + acc.unclaimed + acc.claimed == self.total
        for k in range(1, r):
            info = h.fed.round(k)
            if k == r - 1 and info.phase == Phase.VOTE:  # the round before may still be in its vote
                continue
            assert info.phase in CLOSED
            assert self.closed.setdefault(k, info) == info
        # the minority's candidate: never admitted, never a majority of approvals
        listed = h.fed.members()
        assert not h.fed.is_admitted(self.candidate.address) and self.candidate.address not in listed
        electorate = FOUNDERS if r == 0 else self._view("activeMembers")
        approvals = h.fed.approvals(self.candidate.address)
        assert approvals * 2 <= electorate
        assert approvals <= sum(h.fed.member(a.address).active for a in self.attackers)
        assert h.fed.founders_pending() == sum(m.address not in listed for m in h.members)
        assert h.fed.active_founders() == sum(h.fed.member(m.address).active for m in h.members)

    # -- when the sequence ends --------------------------------------------------------------

    def logs(self) -> list[Log]:
        fed, w3 = self.h.fed, self.h.chain.w3
        names = {event_abi_to_log_topic(e): e["name"] for e in fed.contract.abi if e["type"] == "event"}
        times: dict[int, int] = {}
        out = []
        for lg in w3.eth.get_logs({"address": fed.contract.address, "fromBlock": self.h.deployment.block}):
            name, block = names[bytes(lg["topics"][0])], int(lg["blockNumber"])
            if block not in times:
                times[block] = int(w3.eth.get_block(block)["timestamp"])
            args = dict(getattr(fed.contract.events, name)().process_log(lg)["args"])
            out.append(Log(name, args, times[block], bytes(lg["transactionHash"])))
        return out

    def replay(self) -> dict[int, RoundLog]:
        """Replay the events: who was a member, eligible and admitted when; when each round closed."""
        h = self.h
        founders: set[str] = {m.address for m in h.members}
        admitted, active, listed = set(founders), set[str](), list[str]()
        joined_in: dict[str, int] = {}
        stake: dict[str, int] = {}
        approvers: defaultdict[str, set[str]] = defaultdict(set)  # in this epoch (since the last leave)
        admissions: Counter[int] = Counter()
        rounds: dict[int, RoundLog] = {}
        cur = 0
        logs = self.logs()
        txs: defaultdict[bytes, list[Log]] = defaultdict(list)
        for lg in logs:
            txs[lg.tx].append(lg)
        for k, lg in enumerate(logs):
            a, who = lg.args, str(lg.args.get("member", ""))
            rec = rounds.get(cur)
            first = k == 0 or logs[k - 1].tx != lg.tx  # the transaction's first event
            if first and any(x.name not in NO_SYNC for x in txs[lg.tx]):
                closes = {x.args["round"] for x in txs[lg.tx] if x.name in ("RoundFinalized", "RoundFailed")}
                for n, open_ in rounds.items():
                    if open_.close is None and lg.time >= open_.opened + LAST_DEADLINE:
                        assert n in closes, f"round {n} outlived its last deadline"
            round_rec = rounds.get(int(a["round"])) if "round" in a else None
            if lg.name == "MemberAdmitted":
                c = str(a["candidate"])
                if a["approvals"] == 0:
                    assert c in founders and cur == 0
                else:
                    electorate = FOUNDERS if cur == 0 else len(active)
                    assert a["approvals"] == len(approvers[c]) and a["approvals"] * 2 > electorate
                    assert c != self.candidate.address
                    admissions[cur] += 1
                    assert admissions[cur] <= h.fed.admissions_per_round()
                admitted.add(c)
            elif lg.name == "AdmissionApproved":
                c = str(a["candidate"])
                assert who in active and who not in approvers[c], "approved twice, or as a non-member"
                approvers[c].add(who)
                assert a["approvals"] == len(approvers[c])
            elif lg.name == "MemberJoined":
                assert who not in active and who in admitted
                if who not in listed:
                    listed.append(who)
                assert a["index"] == listed.index(who)
                active.add(who)
                joined_in[who], stake[who] = cur, int(a["stake"])
            elif lg.name == "MemberLeft":
                assert who in active and int(a["stake"]) == stake[who]
                active.discard(who)
                admitted.discard(who)
                approvers.clear()
            elif lg.name == "StakeAdded":
                stake[who] = int(a["stake"])
            elif lg.name == "PhaseChanged":
                assert round_rec is not None and round_rec.close is None
                if Phase(a["phase"]) == Phase.VOTE:
                    round_rec.voting = True
            elif lg.name == "RoundOpened":
                assert a["round"] == cur + 1 and (rec is None or rec.close is not None or rec.voting)
                cur = int(a["round"])
                rounds[cur] = RoundLog(lg.time, int(a["memberCount"]))
                assert a["memberCount"] == len(listed) and a["eligible"] == len(active)
                if cur == 1:  # opened by the last founder's first join, or early by advance
                    joined, members = len(founders & set(listed)), len(founders & active)
                    assert members * 2 > FOUNDERS and (joined == FOUNDERS or len(active) >= self.min_peers)
            elif lg.name in ("Committed", "Revealed", "Voted"):
                r = int(a["round"])
                # commits and reveals go to the open round, votes to the one in its vote before it
                assert r == (cur - 1 if lg.name == "Voted" else cur) and who in active
                assert round_rec is not None and round_rec.close is None
                assert who not in round_rec.members(lg.name), f"{who}: {lg.name} twice in round {r}"
                if lg.name == "Committed":
                    assert joined_in[who] < r and stake[who] >= self.stake, "an ineligible member committed"
                else:
                    assert who in round_rec.members("Committed" if lg.name == "Revealed" else "Revealed")
                    assert lg.name == "Revealed" or round_rec.voting
                round_rec.acts[lg.name].append((who, lg.time))
                if lg.name == "Revealed":
                    assert _well_formed(str(a["cid"]))
                if lg.name == "Voted":
                    round_rec.ballots[who] = bytes(a["proposal"])
            elif lg.name == "Proposed":
                assert round_rec is not None
                round_rec.cids[bytes(a["proposal"])] = str(a["modelCid"])
                assert _well_formed(str(a["modelCid"]))
            elif lg.name == "Slashed":
                # committed or revealed in the round: it could not leave before the round closed
                assert round_rec is not None and who in active
                stake[who] -= int(a["amount"])
                round_rec.slashed.add(who)
            elif lg.name == "RewardCredited":
                assert round_rec is not None
                round_rec.credited.add(who)
            elif lg.name in ("RoundFinalized", "RoundFailed"):
                assert round_rec is not None and round_rec.close is None
                round_rec.close = lg
        assert active == {m.address for m in h.members if h.fed.member(m.address).active}
        return rounds

    def check_round(self, r: int, rec: RoundLog) -> None:
        """Slashes, rewards, windows and quorum of closed round `r`."""
        commits, reveals, votes = (rec.members(kind) for kind in ("Committed", "Revealed", "Voted"))
        assert rec.credited <= votes and not rec.credited & rec.slashed
        close = rec.close
        if close is None:
            assert not rec.slashed and not rec.credited
            return
        failed_in = Phase(close.args["phase"]) if close.name == "RoundFailed" else Phase.VOTE
        if close.name == "RoundFailed" and close.args["reason"] == FailReason.PREVIOUS_FAILED:
            assert not rec.slashed and not rec.credited and not rec.acts["Voted"]  # nobody pays for it
            self.stats["failed with the round before"] += 1
            return
        if failed_in == Phase.VOTE:
            assert rec.slashed == (commits - reveals) | (reveals - votes)  # abstainers pay
            if (reveals - votes) & {a.address for a in self.attackers}:
                self.stats["abstainer slashed"] += 1
        elif failed_in == Phase.REVEAL:
            assert rec.slashed == commits - reveals and not votes
            assert close.args["reason"] == FailReason.TOO_FEW_REVEALS
        else:
            assert rec.slashed == set() and not reveals and close.args["reason"] == FailReason.TOO_FEW_COMMITS
        # every act in its window; vote_at: when the vote began (kept once the round closed)
        vote_at = self.h.fed.round(r).phase_at
        assert all(t < rec.opened + WINDOW for _, t in rec.acts["Committed"])
        # a reveal window ends at its deadline, or (waiting for the round before) when the vote begins
        assert all(t < rec.opened + 2 * WINDOW or (rec.voting and t <= vote_at) for _, t in rec.acts["Revealed"])
        assert all(vote_at <= t < vote_at + VOTE_WINDOW for _, t in rec.acts["Voted"])
        # the winner rule: a quorum of the revealers, or at the deadline (>= 2/3 voted) one of the votes cast
        backing = Counter(rec.ballots.values())
        leader = max(backing.values(), default=0)
        decided = leader * BPS >= self.quorum * len(reveals)
        has_winner = decided or (3 * len(votes) >= 2 * len(reveals) and leader * BPS >= self.quorum * len(votes))
        if close.name == "RoundFailed" and failed_in == Phase.VOTE:
            assert has_winner == (close.args["reason"] == FailReason.NOT_FINALIZED)
        honest = proposal_id(MODELS[0], CID, [10] * rec.member_count)
        if 3 * sum(p == honest for p in rec.ballots.values()) > 2 * len(reveals):  # those who did not back it
            assert has_winner  # (abstainers, odd CIDs, split votes) were fewer than a third: no stall
        if close.name == "RoundFinalized":
            pid = bytes(close.args["proposal"])
            assert close.args["votes"] == backing[pid] == leader and close.args["modelCid"] == rec.cids[pid]
            assert close.time < vote_at + 2 * VOTE_WINDOW
            assert has_winner if close.time >= vote_at + VOTE_WINDOW else decided and votes == reveals
            if rec.cids[pid] != CID:  # honest members vote the harness CID: only the minority backed this one
                assert {m for m, p in rec.ballots.items() if p == pid} <= {a.address for a in self.attackers}
                self.stats["garbage finalized"] += 1
            self.stats["finalized"] += 1

    def check_events(self) -> None:
        for r, rec in self.replay().items():
            self.check_round(r, rec)
        acc = self.h.fed.accounting()
        assert acc.slashed == sum(self.h.fed.rewards(m.address)["slashed"] for m in self.h.members)
        for name in (
            "finalized",
            "failed with the round before",
            "abstainer slashed",
            "garbage vote",
            "left",
            "rejoined",
        ):
            event(_count(self.stats, name))
        event(f"candidate approvals (most): {self.stats['candidate approvals']}")


@settings(
    max_examples=int(os.environ.get("FEDCHAIN_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    early=st.lists(st.integers(0, FOUNDERS - 1), unique=True, max_size=FOUNDERS),
    actions=st.lists(
        st.tuples(st.sampled_from(ACTIONS), st.integers(0, FOUNDERS - 1), st.integers(0, len(ODD_CIDS) - 1)),
        min_size=20,
        max_size=45,
    ),
)
def test_protocol_invariants_hold_over_random_sequences(early: list[int], actions: list[tuple[str, int, int]]) -> None:
    run = Run(early)
    run.check_step()
    for action, i, variant in actions:
        run.act(action, i, variant)
        run.check_step()
    run.check_events()
