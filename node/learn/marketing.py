"""Marketing's yardsticks for a scoring model: rank, decile, lift and the cumulative gains curve.

A campaign calls its prospects best score first, so what matters is how many
buyers the top of the list holds:

- `ranks`: 1 for the highest score; ties keep the input order (a stable sort),
  so the same scores always give the same list.
- `deciles`: 1 for the top tenth of the ranks, 10 for the bottom one (with n
  rows, rank k is in decile 1 + floor(10 (k - 1) / n)).
- `lift_at(y, s, 0.1)`: the positive rate in the top 10% of the list over the
  positive rate of the whole list (1.0: no better than calling at random).
- `gains(y, s)`: the share of all positives found in the top 10%, 20%, ...,
  100% of the list (the cumulative gains curve; a random list gives the
  diagonal 0.1, 0.2, ...).

The top k rows are the first `ceil(fraction * n)` of the list. Rows whose
scores tie across that cut share it: each counts for the part of the tied
group that falls above it (as AUC counts ties half), so lift and gains never
depend on the file's order. A call list still needs one order, so `ranks`
breaks ties by file order.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["deciles", "gains", "lift_at", "ranks", "yardsticks"]

Floats = npt.NDArray[np.float64] | npt.NDArray[np.float32]


def _order(scores: Floats) -> npt.NDArray[np.int64]:
    """Row indices, best score first; ties in input order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").astype(np.int64)


def ranks(scores: Floats) -> npt.NDArray[np.int64]:
    """Each row's place in the call list (1 = highest score)."""
    order = _order(scores)
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.arange(1, len(order) + 1)
    return out


def deciles(rank: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Each rank's decile (1 = the top tenth of the list)."""
    n = len(rank)
    return (1 + (10 * (np.asarray(rank, dtype=np.int64) - 1)) // max(n, 1)).astype(np.int64)


def _top(n: int, fraction: float) -> int:
    return max(1, math.ceil(fraction * n - 1e-9))


def _found(y: npt.NDArray[np.float64], scores: Floats, cuts: list[int]) -> list[float]:
    """Positives among the top `k` rows for each k in `cuts`, rows tied at the cut sharing it evenly."""
    s = np.asarray(scores, dtype=np.float64)
    order = _order(s)
    ys, ss = y[order], s[order]
    found = np.concatenate([[0.0], np.cumsum(ys)])
    out = []
    for k in cuts:
        at = ss[k - 1]
        first = int(np.searchsorted(-ss, -at, side="left"))  # the tied group around the cut: [first, last)
        last = int(np.searchsorted(-ss, -at, side="right"))
        share = (k - first) / (last - first)
        out.append(float(found[first] + share * (found[last] - found[first])))
    return out


def lift_at(y: Floats, scores: Floats, fraction: float = 0.1) -> float:
    """The positive rate among the top `fraction` of rows by score over the overall rate (NaN: no positive)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or y.sum() == 0:
        return float("nan")
    k = _top(len(y), fraction)
    return float(_found(y, scores, [k])[0] / k / y.mean())


def gains(y: Floats, scores: Floats, points: int = 10) -> list[float]:
    """The share of positives in the top 1/points, 2/points, ..., all of the rows by score (NaN: none)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or y.sum() == 0:
        return [float("nan")] * points
    cuts = [_top(len(y), (i + 1) / points) for i in range(points)]
    return [f / float(y.sum()) for f in _found(y, scores, cuts)]


def _rounded(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def yardsticks(y: Floats, scores: Floats) -> dict[str, float | list[float | None] | None]:
    """Lift in the top decile and the gains curve, rounded for JSON (None where undefined: no positive)."""
    return {"lift_at_10": _rounded(lift_at(y, scores, 0.1)), "gains": [_rounded(g) for g in gains(y, scores)]}
