"""Gas budgets from the issue, checked on the embedded chain (gas is exact, not timed)."""

from __future__ import annotations

from bench.gas import TARGET_PER_MEMBER, measure
from ledger.chain import embedded_chain


def test_a_member_round_costs_at_most_150k_gas_and_finalize_grows_linearly() -> None:
    small, large = measure(embedded_chain(), 5), measure(embedded_chain(), 20)
    for row in (small, large):
        assert row["per_member_mean"] <= TARGET_PER_MEMBER, row
    f5, f20 = small["ops"]["finalize"]["max"], large["ops"]["finalize"]["max"]
    per_member = (f20 - f5) / 15
    assert per_member < 20_000, "finalize should cost a small constant per member"
    assert f5 + 45 * per_member < large["block_gas_limit"] / 10  # 50 members: far below the block limit
