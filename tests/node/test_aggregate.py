"""Aggregation rules on tiny hand-built integer arrays, and their determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from node.core.aggregate import fedavg, krum_scores, median, multi_krum, trimmed_mean
from node.core.codec import MAX_ABS


def m(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def test_fedavg_weights_and_rounding() -> None:
    assert fedavg(m([0, 10], [10, 20])).tolist() == [5, 15]
    assert fedavg(m([0, 10], [10, 20]), [3, 1]).tolist() == [2, 12]  # 2.5 -> 2, 12.5 -> 12
    assert fedavg(m([-3], [0])).tolist() == [-2]  # floor(-1.5)
    big = [1 << 40, 1 << 40]  # weights beyond 2**31 in total are shifted down alike
    assert fedavg(m([0], [10]), big).tolist() == [5]


def test_fedavg_does_not_overflow_at_the_value_bound() -> None:
    top = np.full((256, 3), MAX_ABS, dtype=np.int64)
    assert fedavg(top, list(range(1, 257))).tolist() == [MAX_ABS] * 3
    assert fedavg(-top).tolist() == [-MAX_ABS] * 3


def test_median_odd_even() -> None:
    assert median(m([1, 9], [5, 2], [3, 4])).tolist() == [3, 4]
    assert median(m([1, 9], [4, 2])).tolist() == [2, 5]  # floor((1+4)/2), floor((9+2)/2)
    assert median(m([-1], [-2])).tolist() == [-2]  # floor(-1.5)


def test_trimmed_mean_drops_both_tails() -> None:
    u = m([1], [2], [3], [100], [-100])
    assert trimmed_mean(u, 0.2).tolist() == [2]
    assert trimmed_mean(u, 0.0).tolist() == [1]  # floor(6/5)
    with pytest.raises(ValueError):
        trimmed_mean(u, 0.5)


def test_krum_picks_the_cluster_and_refuses_too_few_peers() -> None:
    honest = [[10, 10], [11, 9], [9, 11], [10, 12], [12, 10]]
    u = m(*honest, [1000, -1000], [-900, 900])
    scores = krum_scores(u, f=2)
    assert max(scores[:5]) < min(scores[5:])
    assert multi_krum(u, f=2, m=5).tolist() == fedavg(m(*honest)).tolist()
    assert multi_krum(u, f=2, m=1).tolist() in [row for row in honest]
    with pytest.raises(ValueError, match="2f \\+ 3"):
        krum_scores(u[:6], f=2)


def test_krum_distances_stay_in_int64_for_extreme_values() -> None:
    u = np.zeros((5, 1000), dtype=np.int64)
    u[0], u[1] = MAX_ABS, -MAX_ABS
    scores = krum_scores(u, f=1)
    assert all(s >= 0 for s in scores)
    assert scores[2] < scores[0]


updates = hnp.arrays(
    np.int64,
    st.tuples(st.integers(1, 9), st.integers(1, 20)),
    elements=st.integers(-MAX_ABS, MAX_ABS),
)


@given(updates)
def test_rules_stay_within_the_range_of_their_inputs(u: np.ndarray) -> None:
    lo, hi = u.min(axis=0), u.max(axis=0)
    for out in (fedavg(u), median(u), trimmed_mean(u, 0.2 if u.shape[0] >= 5 else 0.0)):
        assert out.dtype == np.int64 and out.shape == (u.shape[1],)
        assert np.all(out >= lo) and np.all(out <= hi)


@given(updates)
def test_exact_rules_do_not_depend_on_row_order(u: np.ndarray) -> None:
    """Median, trimmed mean and FedAvg are exact, so a permutation of the rows changes nothing."""
    perm = u[::-1].copy()
    assert np.array_equal(median(u), median(perm))
    assert np.array_equal(trimmed_mean(u, 0.0), trimmed_mean(perm, 0.0))
    assert np.array_equal(fedavg(u, list(range(1, u.shape[0] + 1))), fedavg(perm, list(range(u.shape[0], 0, -1))))
