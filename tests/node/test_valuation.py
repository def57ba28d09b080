"""Value scores from peer evaluations: the lower median, never one's own vote, evaluator quality."""

from __future__ import annotations

import numpy as np
import pytest

from node.core.valuation import ABSTAIN, EVAL_SCALE, MIN_GAIN, SCALE, Valuation, abstentions, valid_evaluation


def honest(n: int, value: list[int], noise: int = 0, seed: int = 0) -> dict[int, np.ndarray]:
    """Every member evaluates every other at `value[i]` (+- uniform noise); itself: abstains."""
    rng = np.random.default_rng(seed)
    out = {}
    for j in range(n):
        v = np.array([value[i] + int(rng.integers(-noise, noise + 1)) for i in range(n)], dtype=np.int64)
        v[j] = ABSTAIN
        out[j] = v
    return out


def test_agreeing_evaluators_give_each_member_the_lower_median_and_full_quality() -> None:
    value = [1000, 2000, 0, -500, 3000, MIN_GAIN - 1]
    v = Valuation(honest(6, value), 6)
    assert v.contribution == [1000, 2000, 0, 0, 3000, MIN_GAIN - 1]  # negative value earns nothing
    assert v.quality == [SCALE] * 6
    assert v.scores == [1000, 2000, 0, 0, 3000, 0]  # nor does a gain under MIN_GAIN


def test_a_members_own_evaluation_of_itself_never_counts() -> None:
    evals = honest(5, [1000] * 5)
    evals[0][0] = EVAL_SCALE  # rates itself as high as it can
    assert Valuation(evals, 5).scores[0] == 1000


def test_a_lower_median_takes_the_lower_of_the_two_middle_values() -> None:
    evals = {1: np.array([10, ABSTAIN]), 2: np.array([30, ABSTAIN]), 3: np.array([20, ABSTAIN]), 4: np.array([40, 0])}
    assert Valuation(evals, 2).consensus[0] == 20


def test_a_third_colluding_cannot_zero_an_honest_member_and_gains_little() -> None:
    n = 10
    value = [4000 + 500 * i for i in range(n)]
    truth = Valuation(honest(n, value, noise=200), n)
    evals = honest(n, value, noise=200)
    liars = {7, 8, 9}
    for j in liars:
        evals[j] = np.array([EVAL_SCALE if i in liars else -EVAL_SCALE for i in range(n)], dtype=np.int64)
        evals[j][j] = ABSTAIN
    lied = Valuation(evals, n)
    assert all(lied.scores[i] > 0 for i in range(n) if i not in liars)
    for i in range(n):  # each lower median moves by at most a couple of honest evaluators' positions
        assert abs(lied.consensus[i] - truth.consensus[i]) <= 1500  # type: ignore[operator]
    assert all(lied.quality[j] < SCALE // 10 for j in liars)  # and lying costs them their pay
    assert all(lied.quality[j] == SCALE for j in range(n) if j not in liars)
    assert sum(lied.scores[j] for j in liars) < sum(truth.scores[j] for j in liars)


def test_an_evaluator_departing_more_than_twice_the_typical_way_keeps_part_of_its_pay() -> None:
    evals = honest(6, [20_000] * 6, noise=100, seed=1)
    evals[5] = np.array([20_000 + 2000] * 5 + [ABSTAIN], dtype=np.int64)  # every entry 2000 off
    v = Valuation(evals, 6)
    typical = sorted(v.departure.values())[(len(v.departure) - 1) // 2]
    assert v.quality[5] == SCALE * 2 * typical // v.departure[5] < SCALE


@pytest.mark.parametrize(
    "vector",
    [
        np.array([1, 2, 3], dtype=np.int64),  # wrong length
        np.array([1, EVAL_SCALE + 1, 3, 4], dtype=np.int64),  # beyond a gain of 1
        np.array([1, -EVAL_SCALE - 1, 3, 4], dtype=np.int64),
    ],
)
def test_a_malformed_vector_is_left_out_and_its_sender_has_no_quality(vector: np.ndarray) -> None:
    evals = honest(4, [5000] * 4)
    assert not valid_evaluation(vector, 4)
    evals[0] = vector
    v = Valuation(evals, 4)
    assert v.quality[0] == 0 and v.scores[0] == 0
    assert v.scores[1:] == [5000] * 3


def test_who_evaluates_nothing_is_not_paid_for_its_update() -> None:
    evals = honest(4, [5000] * 4)
    evals[2] = abstentions(4)
    v = Valuation(evals, 4)
    assert v.contribution[2] == 5000 and v.quality[2] == 0 and v.scores[2] == 0
    del evals[3]
    assert Valuation(evals, 4).scores[3] == 0


def test_the_scores_do_not_depend_on_the_order_evaluations_arrive_in() -> None:
    evals = honest(7, [600 * i for i in range(7)], noise=250, seed=3)
    reordered = dict(reversed(list(evals.items())))
    assert Valuation(evals, 7).scores == Valuation(reordered, 7).scores


def test_nobody_to_score_and_nobody_evaluating() -> None:
    assert Valuation({}, 0).scores == []
    assert Valuation({}, 3).scores == [0, 0, 0]


def test_a_pair_rating_each_other_without_usable_updates_earns_nothing() -> None:
    n = 6
    evals = honest(n, [5000] * n)
    for j in range(4):  # honest evaluators abstain on members 4 and 5: their updates were not usable
        evals[j][4] = evals[j][5] = ABSTAIN
    evals[4] = np.array([ABSTAIN] * 4 + [ABSTAIN, EVAL_SCALE], dtype=np.int64)
    evals[5] = np.array([ABSTAIN] * 4 + [EVAL_SCALE, ABSTAIN], dtype=np.int64)
    v = Valuation(evals, n)
    assert v.scores[4] == v.scores[5] == 0  # one rating each, from the other: not half of the raters
    assert v.scores[:4] == [5000] * 4
    failed = {j: abstentions(n) for j in range(4)} | {4: evals[4], 5: evals[5]}  # a failed round: all abstain
    assert Valuation(failed, n).scores == [0] * n


def test_with_three_members_one_liar_decides() -> None:
    """The documented limit: two raters per member, and the lower median of two is the lower rating."""
    evals = honest(3, [5000] * 3)
    evals[2] = np.array([-EVAL_SCALE, -EVAL_SCALE, ABSTAIN], dtype=np.int64)
    assert Valuation(evals, 3).scores[:2] == [0, 0]
