"""Gas budgets from the issue, checked on the embedded chain (gas is exact, not timed)."""

from __future__ import annotations

from bench.gas import TARGET_PER_MEMBER, measure
from ledger.chain import embedded_chain
from tests.harness import Harness


def test_a_member_round_costs_at_most_100k_gas_from_10_members_and_finalize_grows_linearly() -> None:
    """Issue 14's budget: commit (the vote inside) + reveal, the mean over members, at 10 members and more
    (the round's fixed costs, the first vote's and the next round's opening, are shared by fewer below)."""
    small, large = measure(embedded_chain(), 10), measure(embedded_chain(), 20)
    for row in (small, large):
        assert row["per_member_mean"] <= TARGET_PER_MEMBER, row
    f10, f20 = small["ops"]["finalize"]["max"], large["ops"]["finalize"]["max"]
    per_member = (f20 - f10) / 10
    assert per_member < 20_000, "finalize should cost a small constant per member"
    assert f10 + 40 * per_member < large["block_gas_limit"] / 10  # 50 members: far below the block limit


def _settle_all_slashed(n: int) -> tuple[int, int]:
    """Gas of the transaction that closes a round in which all `n` committers failed to reveal
    (the heaviest settlement: one slash per member), and the limit the client sends with."""
    chain = embedded_chain()
    h = Harness.create(chain, founders=n, min_peers=1)
    h.join_all()
    for m in h.members:
        h.commit(m)
    window = h.fed.config()["reveal_window"]
    h.chain.advance_time(h.fed.config()["commit_window"])
    h.chain.advance_time(window + 1)
    receipt = h.fed.advance(h.members[0])  # closes the round: every committer is slashed
    assert h.fed.round(1).phase.name == "FAILED"
    return int(receipt["gasUsed"]), h.fed._gas


def test_the_fixed_gas_limit_covers_a_settlement_of_256_members() -> None:
    """The client sends every federation call with one fixed limit instead of estimating: the
    heaviest call (a round's settlement slashing every member, or a finalize paying every
    member) grows linearly in the members, and at the contract's 256 it still fits."""
    (g5, limit), (g20, _) = _settle_all_slashed(5), _settle_all_slashed(20)
    per_member = (g20 - g5) / 15
    assert g5 + 251 * per_member < limit, (g5, g20, limit)
    small, large = measure(embedded_chain(), 5), measure(embedded_chain(), 20)
    f5, f20 = small["ops"]["finalize"]["max"], large["ops"]["finalize"]["max"]
    assert f5 + 251 * (f20 - f5) / 15 < limit
