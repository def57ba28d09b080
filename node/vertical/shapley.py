"""Each feature party's value: its exact Shapley value over the parties, and the bounty shares it earns.

The owner evaluates every coalition S of feature parties (2^k of them, k <= 8):
v(S) is the validation AUC of the trained model when the parties outside S are
masked (their embedding replaced by its mean over the training rows, so nothing
is retrained), and v(empty) is the owner's columns alone under the same mask. A
party's Shapley value is its marginal gain averaged over every order in which
parties could join:

    phi_i = sum over S not holding i of |S|! (k - |S| - 1)! / k! * (v(S + i) - v(S))

so the values add up to v(all) - v(empty). Shares of the bounty are the
positive values, normalised (a party that hurts or adds nothing earns nothing);
if none is positive the parties split equally, because the contract pays the
whole pool to the parties whatever the owner measures. The coalition table is
committed on chain (its sha256) before the payout, so anyone holding it can
recompute the shares.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations

from node.errors import NodeError

__all__ = ["MAX_PLAYERS", "coalitions", "shapley", "shares_bps", "table_bytes"]

MAX_PLAYERS = 8
BPS = 10_000


def coalitions(players: Sequence[str]) -> list[frozenset[str]]:
    """Every subset of `players`, smallest first."""
    return [frozenset(c) for n in range(len(players) + 1) for c in combinations(players, n)]


def shapley(
    players: Sequence[str], value: Callable[[frozenset[str]], float]
) -> tuple[dict[str, float], dict[frozenset[str], float]]:
    """Exact Shapley values of `players` under `value` (called once per coalition), and the table."""
    k = len(players)
    if k > MAX_PLAYERS:
        raise NodeError(f"{k} feature parties: exact Shapley values are computed for at most {MAX_PLAYERS}")
    table = {s: float(value(s)) for s in coalitions(players)}
    phi = {}
    for p in players:
        total = 0.0
        for s, v in table.items():
            if p in s:
                continue
            weight = math.factorial(len(s)) * math.factorial(k - len(s) - 1) / math.factorial(k)
            total += weight * (table[s | {p}] - v)
        phi[p] = total
    return phi, table


def shares_bps(values: Sequence[float], active: Sequence[bool]) -> list[int]:
    """Basis points per party (in order) adding up to 10000 over the active ones: positive values
    normalised, split by largest remainder (ties to the earlier party); all zero if none is active."""
    if not any(active):
        return [0] * len(values)
    weights = [max(v, 0.0) if a else 0.0 for v, a in zip(values, active, strict=True)]
    if sum(weights) <= 0:
        weights = [1.0 if a else 0.0 for a in active]
    total = sum(weights)
    exact = [BPS * w / total for w in weights]
    out = [math.floor(e) for e in exact]
    order = sorted(range(len(out)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: BPS - sum(out)]:
        out[i] += 1
    return out


def table_bytes(players: Sequence[str], table: Mapping[frozenset[str], float], phi: Mapping[str, float]) -> bytes:
    """The coalition table and the values as canonical JSON (what is stored and hashed on chain)."""
    rows = [{"coalition": sorted(s), "auc": round(v, 9)} for s, v in table.items()]
    doc = {"players": list(players), "coalitions": rows, "shapley": {p: round(phi[p], 9) for p in players}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
