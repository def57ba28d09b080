"""Cheaters in a federation: what they earn, what they do to the model, and what the spec refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ledger.spec import spec_from_dict
from ledger.types import Phase
from node.core.codec import IntArray
from node.core.rules import check_tolerance
from node.errors import NodeError
from node.horizontal.peer import Peer, collect_updates
from node.horizontal.spec import NodeSpec
from node.sim.companies import DemoConfig
from node.sim.demo import play_round, run_demo
from tests.e2e.test_embedded import small_federation


@pytest.mark.parametrize(
    ("poison", "free_ride", "rule"),
    [
        ("sign-flip", "zero", "median"),
        ("scale", "noise", "trimmed-mean"),
        ("label-flip", "stale", "multi-krum"),
        ("backdoor", "copy-global", "median"),
    ],
)
def test_cheaters_earn_at_most_five_percent_and_every_honest_peer_earns(
    sample_csv: Path, poison: str, free_ride: str, rule: str
) -> None:
    cfg = DemoConfig(
        data=sample_csv,
        split_by=None,
        peers=9,
        rounds=3,
        rule=rule,
        poisoners=2,
        poison=poison,
        free_riders=1,
        free_ride=free_ride,
    )
    doc = run_demo(cfg)
    roles = [p["role"] for p in doc["peers"]]
    assert sorted(roles) == ["free-rider"] + ["honest"] * 6 + ["poisoner"] * 2
    assert all(r["status"] == "finalized" for r in doc["rounds"])
    assert doc["cheater_reward_share"] <= 0.05, doc["peers"]
    assert all(int(p["reward"]) > 0 for p in doc["peers"] if p["role"] == "honest"), doc["peers"]
    paid = sum(int(p["reward"]) for p in doc["peers"])
    assert paid == int(doc["rewards_paid"]) > 0


@pytest.mark.parametrize("scoring", ["agreement", "evaluation"])
def test_an_update_replayed_from_the_previous_round_is_rejected(sample_csv: Path, tmp_path: Path, scoring: str) -> None:
    fed, peers, chain = small_federation(sample_csv, tmp_path, 4, scoring)
    first: dict[str, IntArray] = {}

    def replay(peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        if not first:
            first.update(peer.trained_update(r, base))
        return first

    peers[0].make_update = replay
    for r in (1, 2):
        play_round(fed, peers, r, chain)  # type: ignore[arg-type]
        assert fed.round(r).phase == Phase.FINALIZED
        for p in peers:
            p.adopt_latest()
        if r == 1:  # its first, honest, update earned (by evaluation, a round later: see below)
            earned = fed.rewards(peers[0].address)["credited"]
            assert (earned > 0) == (scoring == "agreement")
    fetched = collect_updates(fed, peers[1].store, peers[1].nspec, 2, peers[1].from_block)
    mine = next(f for f in fetched if f.member == peers[0].address)
    if scoring == "evaluation":  # the replay came with a new evaluation: another content hash, still a replay
        assert mine.content_hash != next(rv.content_hash for rv in fed.reveals([1]) if rv.member == peers[0].address)
    assert mine.update is None and mine.reason == "replays an update revealed in round 1"
    # nothing for the replay; by evaluation not for round 1 either: its evaluation came with no usable update
    assert fed.rewards(peers[0].address)["credited"] == earned


def _spec(rule: str, attackers: int, min_peers: int, trim: float = 0.2) -> dict[str, object]:
    return {
        "chain": {"min_peers": min_peers},
        "members": {"founders": ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]},
        "data": {"target": "y", "positive": "yes", "numeric": {"age": [40.0, 10.0]}},
        "aggregation": {"rule": rule, "attackers": attackers, "trim": trim},
    }


@pytest.mark.parametrize(
    ("rule", "attackers", "min_peers", "trim", "ok"),
    [
        ("fedavg", 0, 2, 0.2, True),
        ("fedavg", 1, 10, 0.2, False),
        ("median", 2, 5, 0.2, True),
        ("median", 2, 4, 0.2, False),
        ("trimmed-mean", 2, 10, 0.2, True),
        ("trimmed-mean", 3, 10, 0.2, False),
        ("trimmed-mean", 3, 10, 0.3, True),
        ("multi-krum", 3, 9, 0.2, True),
        ("multi-krum", 3, 8, 0.2, False),
    ],
)
def test_a_spec_that_cannot_withstand_its_attackers_is_refused(
    rule: str, attackers: int, min_peers: int, trim: float, ok: bool
) -> None:
    spec = spec_from_dict(_spec(rule, attackers, min_peers, trim))
    if ok:
        assert NodeSpec.from_federation(spec).attackers == attackers
    else:
        with pytest.raises(NodeError, match=f"attackers = {attackers} cannot be withstood"):
            check_tolerance(rule, attackers, min_peers, trim)


def test_multi_krum_with_fewer_usable_updates_than_planned_still_aggregates() -> None:
    nspec = NodeSpec.from_federation(spec_from_dict(_spec("multi-krum", 2, 7)))
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5):
        ups = [{k: rng.integers(-100, 100, s) for k, s in nspec.layout.items()} for _ in range(n)]
        out = nspec.aggregate(ups)
        assert set(out) == set(nspec.layout)
