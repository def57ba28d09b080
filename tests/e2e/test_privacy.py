"""Differential privacy in a running federation (embedded chain and store): every peer trains with DP-SGD,
reports the epsilon it spent after each round (its events, and on chain with its commitment, where the
audit trail shows it), keeps counting across a restart, and stops submitting once its budget is spent;
the models the peers agree on stay bit-identical."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ledger.audit import read_audit
from ledger.spec import FederationSpec
from ledger.types import Phase
from node.errors import NodeError
from node.horizontal.spec import NodeSpec
from node.sim.companies import DemoConfig
from node.sim.demo import demo_spec
from tests.e2e.embedded_peers import WINDOW, companies_of, embedded_federation, kinds

BUDGET = 2.0


def test_peers_spend_their_budget_report_it_on_chain_and_then_stop(sample_csv: Path, tmp_path: Path) -> None:
    f = embedded_federation(sample_csv, tmp_path, 3, epsilon=BUDGET, rounds=2)  # the budget lasts two rounds
    assert f.nspec.privacy is not None and f.nspec.privacy.rounds == 2
    events = []
    for r in (1, 2):
        events += f.step_until(lambda r=r: f.fed.round(r).phase.closed)  # type: ignore[misc]
        assert f.fed.round(r).phase == Phase.FINALIZED
        for p in f.peers:
            p.adopt_latest()
        first = f.peers[0].params
        assert all(all(np.array_equal(p.params[k], first[k]) for k in first) for p in f.peers)
    # What each peer has spent after each round: its accountant's figure, solved (for its own row count) so
    # that two rounds spend the budget.
    spent = {r: [p.dp.spent(r) for p in f.peers if p.dp is not None] for r in (1, 2)}
    assert all(0 < a < b <= BUDGET and b > BUDGET * 0.97 for a, b in zip(spent[1], spent[2], strict=True))
    assert [p.epsilon for p in f.peers] == spent[2]
    said_in_events = sorted(e.details["epsilon"] for e in events if e.kind == "committed")
    assert said_in_events == sorted(spent[1] + spent[2])

    # The audit trail shows what each member said it spent, in thousandths rounded up.
    trail = read_audit(f.fed, f.block)
    for r in (1, 2):
        said = {c["member"]: c["epsilon"] for c in trail.rounds[r].commits}
        assert said == {p.address: math.ceil(e * 1000 - 1e-9) / 1000 for p, e in zip(f.peers, spent[r], strict=True)}

    # A restarted peer keeps counting from its state file; one whose state file is lost counts from the chain.
    again = f.restart(1)
    assert again.epsilon == spent[2][1] and sorted(again.state.dp_rounds) == ["1", "2"]
    f.state_path(2).unlink()
    lost = f.restart(2)
    assert lost.state.dp_rounds == {} and lost.epsilon == 0

    # Round 3 would overspend: every peer said so once (still voting on round 2) and commits nothing; the
    # round fails for want of commits.
    for i in range(3):
        said = [e for e in f.sink(i) if e.kind == "budget-spent"]
        assert len(said) == 1 and said[0].round == 3 and said[0].details["budget"] == BUDGET
        assert "privacy budget spent" in said[0].text()
    assert kinds(f.step_all()) == ["idle"] * 3
    recovered = [e for e in f.sink(2) if e.kind == "privacy-recovered"]
    assert len(recovered) == 1 and recovered[0].details["rounds"] == [1, 2] and "state file" in recovered[0].text()
    assert lost.epsilon == spent[2][2] and len([e for e in f.sink(2) if e.kind == "budget-spent"]) == 2
    f.chain.advance_time(WINDOW + 1)
    f.fed.advance(f.accounts[0])
    assert f.fed.round(3).phase == Phase.FAILED and f.fed.round(3).commits == 0
    assert read_audit(f.fed, f.block).rounds[3].fail_reason == "too-few-commits"


def test_dp_with_scoring_by_evaluation_is_refused(sample_csv: Path) -> None:
    schema, _ = companies_of(sample_csv, 3)
    founders = ["0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20]

    def spec(scoring: str) -> FederationSpec:
        cfg = DemoConfig(data=sample_csv, split_by=None, peers=3, scoring=scoring, epsilon=1.0)
        return demo_spec(cfg, schema, founders, 3)

    with pytest.raises(NodeError, match="published outside the privacy accountant"):
        NodeSpec.from_federation(spec("evaluation"))
    assert NodeSpec.from_federation(spec("agreement")).privacy is not None
