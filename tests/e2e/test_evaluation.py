"""Scoring by peer evaluation through the whole protocol: what is published, what is paid, what verifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ledger.audit import read_audit
from ledger.types import Phase
from node.core.valuation import ABSTAIN, EVAL_SCALE
from node.errors import NodeError
from node.horizontal.exchange import Cache, collect_updates
from node.horizontal.verify import rerun, verify_round
from node.sim.companies import DemoConfig
from node.sim.demo import play_round, run_demo
from tests.e2e.test_embedded import small_federation


def _play(fed, peers, chain, rounds: int) -> None:  # type: ignore[no-untyped-def]
    for r in range(1, rounds + 1):
        play_round(fed, peers, r, chain)
        assert fed.round(r).phase == Phase.FINALIZED
        for p in peers:
            p.adopt_latest()


def test_evaluations_ride_with_updates_rewards_lag_a_round_and_audit_verify_recomputes(
    sample_csv: Path, tmp_path: Path
) -> None:
    fed, peers, chain = small_federation(sample_csv, tmp_path, 4, scoring="evaluation")
    _play(fed, peers, chain, 3)
    reader = peers[0]
    members = fed.members()
    cache: Cache = {}
    for r in (1, 2, 3):
        fetched = collect_updates(fed, reader.store, reader.nspec, r, reader.from_block)
        cached = collect_updates(fed, reader.store, reader.nspec, r, reader.from_block, cache=cache)
        assert [(f.member, f.update_hash, f.reason) for f in cached] == [
            (f.member, f.update_hash, f.reason) for f in fetched
        ]
        assert {k[0] for k in cache} == ({1} if r == 1 else {r - 1, r})  # the last two rounds only
        assert len(fetched) == 4 and all(f.update is not None for f in fetched)
        for f in fetched:
            assert f.evaluation is not None
            assert f.evaluation.shape == ((0,) if r == 1 else (4,))
            if r > 1:  # each evaluates the others, never itself
                own = members.index(f.member)
                assert f.evaluation[own] == ABSTAIN
                assert all(abs(int(x)) <= EVAL_SCALE for i, x in enumerate(f.evaluation) if i != own)
        verdict = verify_round(fed, reader.store, reader.nspec, r, reader.from_block)
        assert verdict.ok, verdict.lines
    records = read_audit(fed, reader.from_block).rounds
    assert records[1].rewards == []  # round 1's proposal scores nothing: its work is valued in round 2
    assert any(int(x["amount"]) > 0 for r in (2, 3) for x in records[r].rewards)
    _, outcome = rerun(fed, reader.store, reader.nspec, 2, reader.from_block)
    assert outcome.valuation is not None and outcome.valuation.n == 4
    assert outcome.scores == fed.winning_proposal(2, reader.from_block).scores


def test_an_out_of_range_evaluation_is_left_out_and_costs_its_sender_its_pay(sample_csv: Path, tmp_path: Path) -> None:
    fed, peers, chain = small_federation(sample_csv, tmp_path, 4, scoring="evaluation")
    peers[0].make_evaluation = lambda _peer, _r, honest: np.where(honest == ABSTAIN, ABSTAIN, 3 * EVAL_SCALE)
    _play(fed, peers, chain, 2)
    _, outcome = rerun(fed, peers[1].store, peers[1].nspec, 2, peers[1].from_block)
    assert outcome.used == 4 and not outcome.rejected  # its update still counts
    assert outcome.valuation is not None
    me = fed.members().index(peers[0].address)
    assert outcome.valuation.quality[me] == 0 and outcome.scores[me] == 0
    assert any(s > 0 for i, s in enumerate(outcome.scores) if i != me)


def test_colluding_evaluators_lose_pay_and_cannot_starve_an_honest_company(sample_csv: Path) -> None:
    cfg = DemoConfig(data=sample_csv, split_by=None, peers=6, rounds=3, scoring="evaluation", liars=2)
    doc = run_demo(cfg)
    roles = sorted(p["role"] for p in doc["peers"])
    assert roles == ["honest"] * 4 + ["liar"] * 2
    assert all(r["status"] == "finalized" for r in doc["rounds"])
    assert all(int(p["reward"]) > 0 for p in doc["peers"] if p["role"] == "honest"), doc["peers"]
    assert doc["cheater_reward_share"] < 2 / 6  # below their head count: lying costs them quality


def test_liars_need_scoring_by_evaluation(sample_csv: Path) -> None:
    with pytest.raises(NodeError, match="--scoring evaluation"):
        run_demo(DemoConfig(data=sample_csv, split_by=None, peers=4, rounds=1, liars=1, scoring="agreement"))
