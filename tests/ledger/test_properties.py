"""Protocol invariants over random sequences of joins, commits, reveals, votes, timeouts and claims.

Runs on the embedded chain (hypothesis needs many examples; anvil runs the
hand-written suite). Each example plays a random list of actions, weighted so
that honest steps dominate and rounds do reach their end, mixed with bad ones
(double acts, wrong salts, split votes, outsiders, timeouts). After every action:
- tokens are conserved: the contract holds stakes + pool + unclaimed rewards, and
  stakes + pool + unclaimed + claimed changes only when someone joins;
- a closed round (finalized or failed) never changes;
- a non-member's attempt to act reverts.
When the sequence ends, the events show that no member committed, revealed or
voted twice in a round, that every actor was a member, and that only revealers voted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.audit import read_audit
from ledger.chain import embedded_chain
from ledger.errors import ContractRevert
from ledger.types import Phase, RoundInfo
from tests.harness import CID, Harness, funded

MEMBERS = 4
MODELS = (b"\x0a" * 32, b"\x0b" * 32)
WINDOW = 300
ACTIONS = ["honest"] * 12 + ["join", "advance", "commit", "reveal", "bad-reveal", "vote"]
ACTIONS += ["split-vote", "finalize", "short-wait", "long-wait", "claim", "outsider"]


def _ok(fn: Callable[..., Any], *args: Any) -> bool:
    try:
        fn(*args)
    except ContractRevert:
        return False
    return True


class Run:
    def __init__(self, joining: int) -> None:
        chain = embedded_chain()
        self.h = Harness.create(chain, founders=MEMBERS, commit_window=WINDOW, reveal_window=WINDOW, vote_window=WINDOW)
        for m in self.h.members[:joining]:
            self.h.fed.join(m)
        self.outsider = funded(chain, 1)[0]
        self.total = self._total()
        self.closed: dict[int, RoundInfo] = {}

    def _total(self) -> int:
        acc = self.h.fed.accounting()
        return acc.staked + acc.pool + acc.unclaimed + acc.claimed

    def honest(self, first: int) -> None:
        """The next thing an honest member would do, tried from member `first` on until one acts."""
        h, r = self.h, self.h.round
        if r == 0:
            _ok(h.fed.advance, h.members[first])
            return
        info = h.fed.round(r)
        for k in range(MEMBERS):
            m = h.members[(first + k) % MEMBERS]
            if info.phase == Phase.COMMIT and _ok(h.commit, m):
                return
            if info.phase == Phase.REVEAL and (r, m.address) in h.secrets and _ok(h.reveal, m):
                return
            if info.phase == Phase.VOTE and info.winner == b"\0" * 32:
                if _ok(h.fed.vote, m, r, MODELS[0], CID, [10] * info.member_count):
                    return
            elif info.phase == Phase.VOTE and _ok(h.fed.finalize, m, r):
                return

    def act(self, action: str, i: int) -> None:
        h, r, m = self.h, self.h.round, self.h.members[i]
        n = h.fed.round(r).member_count if r else 0
        if action == "honest":
            self.honest(i)
        elif action == "join":
            if _ok(h.fed.join, m):
                self.total = self._total()
        elif action == "advance":
            _ok(h.fed.advance, m)
        elif action == "commit":
            _ok(h.commit, m)
        elif action == "reveal":
            _ok(h.reveal, m) if (r, m.address) in h.secrets else None
        elif action == "bad-reveal":
            content = h.secrets.get((r, m.address), (os.urandom(32), b""))[0]
            assert not _ok(h.fed.reveal, m, r, content, CID, os.urandom(32))
        elif action in ("vote", "split-vote"):
            model = MODELS[action == "split-vote"]
            _ok(h.fed.vote, m, r, model, CID, [10] * n)
        elif action == "finalize":
            _ok(h.fed.finalize, m, r) if r and h.fed.round(r).winner != b"\0" * 32 else None
        elif action in ("short-wait", "long-wait"):
            h.chain.advance_time(30 if action == "short-wait" else WINDOW)
        elif action == "claim":
            _ok(h.fed.claim, m)
        elif action == "outsider":
            o = self.outsider
            assert not _ok(h.fed.commit, o, max(r, 1), os.urandom(32))
            assert not _ok(h.fed.reveal, o, max(r, 1), b"\x01" * 32, CID, b"\x02" * 32)
            assert not _ok(h.fed.vote, o, max(r, 1), MODELS[0], CID, [1] * n)
            assert not _ok(h.fed.approve_member, o, o.address)

    def check_step(self) -> None:
        acc = self.h.fed.accounting()
        assert acc.held == acc.staked + acc.pool + acc.unclaimed
        assert acc.staked + acc.pool + acc.unclaimed + acc.claimed == self.total
        for r in range(1, self.h.round):
            info = self.h.fed.round(r)
            assert info.phase in (Phase.FINALIZED, Phase.FAILED)
            assert self.closed.setdefault(r, info) == info

    def check_events(self) -> None:
        trail = read_audit(self.h.fed, self.h.deployment.block)
        members = {m.address for m in self.h.members}
        assert set(trail.members) <= members
        for rec in trail.rounds.values():
            for kind in (rec.commits, rec.reveals, rec.votes):
                actors = [e["member"] for e in kind]
                assert len(actors) == len(set(actors))
                assert set(actors) <= members
            assert {e["member"] for e in rec.reveals} <= {e["member"] for e in rec.commits}
            assert {e["member"] for e in rec.votes} <= {e["member"] for e in rec.reveals}
            credited = {x["member"] for x in rec.rewards}
            assert credited <= {e["member"] for e in rec.reveals}
            assert not credited & {x["member"] for x in rec.slashes}
        finalized = sum(rec.status == "finalized" for rec in trail.rounds.values())
        event(f"rounds finalized: {min(finalized, 2)}{'+' if finalized >= 2 else ''}")
        event(f"slashes: {'some' if any(rec.slashes for rec in trail.rounds.values()) else 'none'}")


@settings(
    max_examples=int(os.environ.get("FEDCHAIN_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    joining=st.integers(min_value=2, max_value=MEMBERS),
    actions=st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, MEMBERS - 1)), min_size=20, max_size=60),
)
def test_protocol_invariants_hold_over_random_sequences(joining: int, actions: list[tuple[str, int]]) -> None:
    run = Run(joining)
    for action, i in actions:
        run.act(action, i)
        run.check_step()
    run.check_events()
