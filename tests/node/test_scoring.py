"""Contribution scores: honest updates earn, cheating ones do not, and every peer computes the same integers."""

from __future__ import annotations

import numpy as np
import pytest

from node.core.codec import to_fixed
from node.core.scoring import NOISE_FLOOR, SCALE, agreements, contribution_scores

P = 2_000  # parameters


def _honest(n: int, seed: int = 0, spread: float = 0.5) -> list[np.ndarray]:
    """n updates sharing one direction, each with its own skew (non-IID data)."""
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.01, P)
    return [to_fixed(common * rng.uniform(0.5, 1.5) + rng.normal(0, 0.01 * spread, P)) for _ in range(n)]


def test_honest_updates_all_earn() -> None:
    scores = contribution_scores(_honest(7))
    assert all(s > SCALE // 10 for s in scores), scores


@pytest.mark.parametrize("attack", ["zero", "sign-flip", "noise", "boost", "rejected"])
def test_a_minority_of_cheaters_earns_nothing(attack: str) -> None:
    honest = _honest(7, seed=1)
    rng = np.random.default_rng(2)
    bad: list[np.ndarray | None]
    if attack == "zero":
        bad = [np.zeros(P, dtype=np.int64)] * 3
    elif attack == "sign-flip":
        bad = [-u for u in honest[:3]]
    elif attack == "noise":
        bad = [to_fixed(rng.normal(0, 0.01, P)) for _ in range(3)]
    elif attack == "boost":
        bad = [u * 50 for u in honest[:3]]
    else:
        bad = [None, None, None]
    scores = contribution_scores([*honest, *bad])
    assert all(s > 0 for s in scores[:7]), scores
    # a boost of 50 keeps 1/50 of an agreement: below the noise floor
    assert scores[7:] == [0, 0, 0], scores


def test_a_boosted_update_earns_its_inverse_boost_squared() -> None:
    rng = np.random.default_rng(3)
    g = rng.normal(0, 0.01, P)
    honest = [to_fixed(g + rng.normal(0, 1e-4, P)) for _ in range(5)]
    scores = contribution_scores([*honest, to_fixed(4 * g)])
    assert SCALE // 16 - 20 <= scores[-1] <= SCALE // 16  # (1/4)^2
    assert min(scores[:-1]) > 9_000


def test_identical_updates_agree_fully_and_a_lone_update_earns() -> None:
    u = _honest(1)[0]
    assert agreements(np.stack([u, u]))[0][1] == SCALE
    assert contribution_scores([u]) == [SCALE]
    assert contribution_scores([np.zeros(P, dtype=np.int64)]) == [0]
    assert contribution_scores([None, None]) == [0, 0]


def test_a_round_where_nobody_clearly_agrees_pays_nobody() -> None:
    """Near convergence, updates are mostly minibatch noise: weak agreement earns nothing."""
    rng = np.random.default_rng(8)
    g = rng.normal(0, 1, P)
    weak = [to_fixed(0.01 * (0.08 * g + rng.normal(0, 1, P))) for _ in range(6)]  # cos ~ 0.006 with g
    assert contribution_scores(weak) == [0] * 6
    strong = [to_fixed(0.01 * (0.5 * g + rng.normal(0, 0.2, P))) for _ in range(6)]
    assert all(s > 0 for s in contribution_scores(strong))


def test_agreements_below_the_noise_floor_count_as_zero() -> None:
    rng = np.random.default_rng(4)
    rows = np.stack([to_fixed(rng.normal(0, 1, P)) for _ in range(6)])
    a = agreements(rows)
    assert all(a[i][j] == 0 or a[i][j] >= NOISE_FLOOR for i in range(6) for j in range(6))
    assert all(a[i][j] == 0 for i in range(6) for j in range(6) if i != j)  # independent noise: orthogonal


def test_scores_follow_their_update_when_the_order_changes() -> None:
    ups = [*_honest(6, seed=5), -_honest(1, seed=6)[0]]
    scores = contribution_scores(ups)
    order = np.random.default_rng(7).permutation(len(ups))
    assert contribution_scores([ups[i] for i in order]) == [scores[i] for i in order]


def test_extreme_values_stay_exact() -> None:
    """Updates at the codec's limits, over many parameters, do not overflow int64."""
    big = np.full(200_000, 2**31 - 1, dtype=np.int64)
    scores = contribution_scores([big, big.copy(), big.copy(), -big])
    assert scores == [SCALE, SCALE, SCALE, 0]
