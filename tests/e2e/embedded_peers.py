"""Real peers on the embedded chain and store, stepped one at a time by a test.

Like `tests.e2e.test_embedded.small_federation`, but typed, with each peer's
state file and event sink kept, so a test can restart a peer from its state
file and read what it reported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.chain import Chain, embedded_chain
from ledger.client import FederationClient
from ledger.deploy import deploy
from node.events import StepEvent
from node.horizontal.peer import Peer, UpdateMaker
from node.horizontal.spec import NodeSpec
from node.horizontal.state import PeerState
from node.learn.data import Schema
from node.sim.companies import Company, DemoConfig, load_companies
from node.sim.demo import WINDOW, demo_spec
from node.store import EmbeddedStore

__all__ = ["WINDOW", "Federation", "companies_of", "embedded_federation", "kinds"]


@functools.cache
def companies_of(csv: Path, n: int) -> tuple[Schema, list[Company]]:
    """`csv` split at random into `n` companies (loaded once per session: the split is seeded)."""
    return load_companies(DemoConfig(data=csv, split_by=None, peers=n, rounds=1))


@dataclass
class Federation:
    chain: Chain
    fed: FederationClient
    nspec: NodeSpec
    store: EmbeddedStore
    block: int
    root: Path
    companies: list[Company]
    accounts: list[LocalAccount]
    peers: list[Peer] = field(default_factory=list)
    events: dict[str, list[StepEvent]] = field(default_factory=dict)  # what each peer sent to its sink

    def state_path(self, i: int) -> Path:
        return self.root / f"{self.companies[i].name}.json"

    def new_peer(self, i: int, state: PeerState, make_update: UpdateMaker | None = None) -> Peer:
        """Peer `i` as a process starting now would build it (its sink is the same list as before)."""
        c = self.companies[i]
        sink = self.events.setdefault(c.name, [])
        return Peer(
            c.name,
            self.accounts[i],
            self.fed,
            self.store,
            c.train,
            self.nspec,
            state,
            from_block=self.block,
            on_event=sink.append,
            make_update=make_update,
        )

    def restart(self, i: int, state: PeerState | None = None) -> Peer:
        """Replace peer `i` by a new object, with its state loaded from its state file (or `state`)."""
        peer = self.new_peer(i, PeerState.load(self.state_path(i)) if state is None else state)
        peer.make_update = self.peers[i].make_update
        self.peers[i] = peer
        return peer

    def sink(self, i: int) -> list[StepEvent]:
        return self.events[self.companies[i].name]

    def step_all(self, peers: Iterable[Peer] | None = None) -> list[StepEvent]:
        """One step of each peer (all of them unless `peers`), in order."""
        return [p.step() for p in (self.peers if peers is None else peers)]

    def step_until(self, done: Callable[[], bool], limit: int = 100) -> list[StepEvent]:
        """Step the peers in turn, one at a time, until `done()` holds (checked before every step)."""
        events: list[StepEvent] = []
        while not done():
            if len(events) >= limit:
                raise AssertionError(f"not done after {limit} steps: {kinds(events)}")
            events.append(self.peers[len(events) % len(self.peers)].step())
        return events


def embedded_federation(
    csv: Path, root: Path, n: int, rule: str = "fedavg", scoring: str = "agreement", **demo: Any
) -> Federation:
    """`n` founders joined (round 1 open), one peer each with a state file under `root`. Scores by agreement
    unless `scoring` says otherwise: these tests check a round's own scores. `demo` sets more of the demo's
    spec (`DemoConfig`: epsilon and rounds give a [privacy] budget lasting that many rounds)."""
    schema, companies = companies_of(csv, n)
    chain = embedded_chain()
    deployer, *accounts = [Account.create() for _ in range(n + 1)]
    for a in (deployer, *accounts):
        chain.fund(a.address, 10**21)
    cfg = DemoConfig(data=csv, split_by=None, peers=n, rule=rule, scoring=scoring, **{"rounds": 1, **demo})
    spec = demo_spec(cfg, schema, [a.address for a in accounts], n)
    deployment = deploy(chain, deployer, spec)
    fed = FederationClient(chain, deployment.federation)
    federation = Federation(
        chain,
        fed,
        NodeSpec.from_federation(spec),
        EmbeddedStore(root / "store"),
        deployment.block,
        root,
        companies,
        accounts,
    )
    federation.peers = [federation.new_peer(i, PeerState(federation.state_path(i))) for i in range(n)]
    for p in federation.peers:
        fed.join(p.account)
    return federation


def kinds(events: Iterable[StepEvent], round_id: int | None = None) -> list[str]:
    """The kinds of `events` (of round `round_id` only, if given)."""
    return [e.kind for e in events if round_id is None or e.round == round_id]
