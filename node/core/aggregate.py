"""Aggregation rules as pure functions over fixed-point integer updates.

Every function takes a matrix of shape (n_peers, n_params) of int64 values
(see `node.core.codec`: |value| <= 2**31 - 1), rows in the canonical order (members
sorted by address), and returns one int64 vector. Only integer arithmetic is
used, and every rounding is a floor, so every honest peer computes the same
bits whatever its CPU, thread count or numpy build.

- FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks
  from Decentralized Data", AISTATS 2017.
- Coordinate-wise median and trimmed mean: Yin, Chen, Ramchandran, Bartlett,
  "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
  ICML 2018.
- Krum and Multi-Krum: Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine
  Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["fedavg", "krum_scores", "median", "multi_krum", "trimmed_mean"]

IntArray = npt.NDArray[np.int64]


def _ints(values: object) -> IntArray:
    return np.asarray(values, dtype=np.int64)


def _check(updates: IntArray) -> IntArray:
    u = np.asarray(updates)
    if u.ndim != 2 or u.shape[0] == 0 or u.dtype != np.int64:
        raise ValueError(f"updates must be a non-empty (n, params) int64 matrix, got {u.dtype} {u.shape}")
    return u


MAX_TOTAL_WEIGHT = 1 << 31


def _weights(weights: Sequence[int] | None, n: int) -> list[int]:
    """Non-negative integer weights, scaled down (by a shift, the same on every peer) to sum <= 2**31."""
    w = [1] * n if weights is None else [int(x) for x in weights]
    if len(w) != n or any(x < 0 for x in w) or sum(w) == 0:
        raise ValueError(f"need {n} non-negative weights, not all zero, got {w}")
    shift = max(0, sum(w).bit_length() - 31)
    w = [x >> shift for x in w]
    if sum(w) == 0:
        raise ValueError("weights too uneven to represent")
    return w


def fedavg(updates: IntArray, weights: Sequence[int] | None = None) -> IntArray:
    """Weighted mean (weights: e.g. training rows), rounded down, exact in int64.

    The weights sum to at most 2**31 and |value| < 2**31, so the weighted sum stays below 2**62.
    """
    u = _check(updates)
    w = _weights(weights, u.shape[0])
    total = np.zeros(u.shape[1], dtype=np.int64)
    step = np.empty_like(total)
    for wi, row in zip(w, u, strict=True):  # row by row: one parameter vector of scratch, not n
        total += np.multiply(row, wi, out=step)
    return _ints(np.floor_divide(total, sum(w)))


def median(updates: IntArray) -> IntArray:
    """Coordinate-wise median; for an even count, the floor of the mean of the middle two."""
    u = np.sort(_check(updates), axis=0)
    n = u.shape[0]
    if n % 2:
        return _ints(u[n // 2].copy())
    return _ints(np.right_shift(u[n // 2 - 1] + u[n // 2], 1))


def trimmed_mean(updates: IntArray, beta: float) -> IntArray:
    """Coordinate-wise mean after dropping the floor(beta * n) largest and smallest values."""
    u = np.sort(_check(updates), axis=0)
    n = u.shape[0]
    k = int(beta * n)
    if not 0 <= beta < 0.5 or n - 2 * k < 1:
        raise ValueError(f"trimmed mean needs 0 <= beta < 0.5 leaving a value, got beta={beta} for n={n}")
    kept = u[k : n - k]
    return _ints(np.floor_divide(kept.sum(axis=0, dtype=np.int64), kept.shape[0]))


def _distance_shift(u: IntArray) -> int:
    """Right shift that keeps a sum of squared differences of `u`'s rows inside int64."""
    spread = int(u.max()) - int(u.min())
    budget = 62 - max(1, u.shape[1]).bit_length()
    return int(max(0, (2 * spread.bit_length() - budget + 1) // 2))


def krum_scores(updates: IntArray, f: int) -> list[int]:
    """Each row's Krum score: the sum of squared distances to its n - f - 2 nearest rows."""
    u = _check(updates)
    n = u.shape[0]
    if n < 2 * f + 3:
        raise ValueError(f"Krum needs n >= 2f + 3, got n={n}, f={f}")
    v = np.right_shift(u, _distance_shift(u))
    dist = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        d = v[i + 1 :] - v[i]
        dist[i, i + 1 :] = np.einsum("ij,ij->i", d, d, dtype=np.int64)
        dist[i + 1 :, i] = dist[i, i + 1 :]
    closest = n - f - 2
    return [int(np.sort(np.delete(dist[i], i))[:closest].sum(dtype=np.int64)) for i in range(n)]


def multi_krum(updates: IntArray, f: int, m: int | None = None) -> IntArray:
    """Mean of the m rows with the lowest Krum scores (ties: earlier row). m=1 is Krum."""
    u = _check(updates)
    n = u.shape[0]
    m = n - f if m is None else m
    if not 1 <= m <= n:
        raise ValueError(f"Multi-Krum needs 1 <= m <= n, got m={m}, n={n}")
    scores = krum_scores(u, f)
    chosen = sorted(sorted(range(n), key=lambda i: (scores[i], i))[:m])
    return fedavg(u[chosen])
