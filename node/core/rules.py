"""Each aggregation rule registered once: its function, its robustness bound, what it must see.

In the style of Flower's strategies, a `Rule` carries its own behaviour, so the
spec check (`check_tolerance`), the peer (`node.horizontal.spec.NodeSpec.aggregate`)
and `fedchain deploy` read this registry instead of each keeping an `if rule == ...`
chain. Pure: integer arrays in, integer arrays out; no torch, no I/O, no chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from node.core import aggregate
from node.core.aggregate import IntArray
from node.errors import NodeError

__all__ = ["RULES", "Rule", "RuleSettings", "check_tolerance", "rule", "tolerance"]


@dataclass(frozen=True)
class RuleSettings:
    """What the spec says beyond the rule's name: trimmed mean's trim, the attackers (Krum's f), Krum's m."""

    trim: float = 0.2
    attackers: int = 0
    krum_m: int | None = None


@dataclass(frozen=True)
class Rule:
    """One aggregation rule.

    `combine(flat, settings)` maps an (n, d) int64 matrix, rows in canonical order,
    to one int64 vector. `tolerance(n, trim)` is how many attackers a round of `n`
    updates withstands; `bound` says that bound in words. `needs_updates`: the
    rule must see each update on its own (every rule so far; a rule that only
    needs their sum could run over a secure aggregate).
    """

    name: str
    combine: Callable[[IntArray, RuleSettings], IntArray]
    tolerance: Callable[[int, float], int]
    bound: str
    needs_updates: bool = True


def _multi_krum(flat: IntArray, s: RuleSettings) -> IntArray:
    n = flat.shape[0]
    if n < 3:  # too few for Krum at all
        return aggregate.median(flat)
    # with fewer usable updates than the spec planned for, Krum with the f they allow
    f = min(s.attackers, _krum_tolerance(n, s.trim))
    return aggregate.multi_krum(flat, f, s.krum_m if f == s.attackers else None)


def _krum_tolerance(n: int, _trim: float) -> int:
    return max(0, (n - 3) // 2)


_REGISTRY: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("fedavg", lambda flat, _s: aggregate.fedavg(flat), lambda _n, _t: 0, "tolerates no attacker"),
        Rule(
            "median", lambda flat, _s: aggregate.median(flat), lambda n, _t: max(0, (n - 1) // 2), "needs n >= 2f + 1"
        ),
        Rule(
            "trimmed-mean",
            lambda flat, s: aggregate.trimmed_mean(flat, s.trim),
            lambda n, t: int(t * n),
            "needs floor(trim * n) >= f",
        ),
        Rule("multi-krum", _multi_krum, _krum_tolerance, "needs n >= 2f + 3"),
    )
}

RULES: tuple[str, ...] = tuple(_REGISTRY)


def rule(name: str) -> Rule:
    """The registered rule `name` (NodeError naming the known rules otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NodeError(f"spec [aggregation] rule = {name!r}: expected one of {', '.join(RULES)}") from None


def tolerance(name: str, n: int, trim: float = 0.2) -> int:
    """How many attackers rule `name` withstands in a round of `n` updates.

    FedAvg: none (one update can move the mean anywhere). Median: fewer than half,
    f <= (n - 1) / 2. Trimmed mean: as many as it trims from each end, floor(trim * n).
    Multi-Krum: n >= 2f + 3 (Blanchard et al. 2017).
    """
    return rule(name).tolerance(n, trim)


def check_tolerance(name: str, attackers: int, min_peers: int, trim: float = 0.2) -> None:
    """Refuse a spec whose rule cannot withstand its declared attackers in its smallest round."""
    entry = rule(name)
    if name == "trimmed-mean" and not 0 <= trim < 0.5:
        raise NodeError(f"spec [aggregation] trim = {trim}: expected at least 0 and below 0.5")
    if attackers < 0:
        raise NodeError(f"spec [aggregation] attackers = {attackers}: expected 0 or more")
    can = entry.tolerance(min_peers, trim)
    if attackers > can:
        why = f"{name} {entry.bound}"
        raise NodeError(
            f"spec [aggregation] attackers = {attackers} cannot be withstood: {why}, and with "
            f"[chain] min_peers = {min_peers} a round may finalize with {min_peers} updates, "
            f"which tolerates {can}; raise min_peers, declare fewer attackers or pick a more robust rule"
        )
