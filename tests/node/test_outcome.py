"""`round_outcome`: the model, scores and rejections a round's checked updates give.

Hand-built integer updates over a two-feature logistic regression (three
parameters: `0.weight` (1, 2) then `0.bias` (1,)), so every expected number
below is worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import to_checksum_address

from ledger.spec import spec_from_dict
from node.core.codec import IntArray
from node.horizontal.exchange import FetchedUpdate
from node.horizontal.outcome import round_outcome
from node.horizontal.spec import NodeSpec

# Checksummed (mixed-case) addresses, in ascending order: the order collect_updates sorts by.
A, B, C, R, X = (to_checksum_address("0x" + ch * 40) for ch in "abcde")


@pytest.fixture(scope="module")
def nspec() -> NodeSpec:
    spec = spec_from_dict(
        {
            "chain": {"min_peers": 2},
            "members": {"founders": [A, B, C, R, X]},
            "data": {"target": "y", "positive": "yes", "numeric": {"f1": [0.0, 1.0], "f2": [0.0, 1.0]}},
            "model": {"kind": "logreg", "seed": 0},
            "aggregation": {"rule": "fedavg"},
        }
    )
    return NodeSpec.from_federation(spec)


def params(w0: int, w1: int, b: int) -> dict[str, IntArray]:
    return {"0.weight": np.array([[w0, w1]], dtype=np.int64), "0.bias": np.array([b], dtype=np.int64)}


def flat(p: dict[str, IntArray]) -> list[int]:
    return [int(v) for v in (*p["0.weight"].ravel(), *p["0.bias"].ravel())]


def got(member: str, p: dict[str, IntArray]) -> FetchedUpdate:
    return FetchedUpdate(member, bytes(32), "bafy-" + member[-4:], p)


def lost(member: str, reason: str) -> FetchedUpdate:
    return FetchedUpdate(member, bytes(32), "bafy-" + member[-4:], None, reason)


BASE = params(100, 200, 300)
UA, UB, UC = params(2, -3, 5), params(4, -4, 6), params(2, -3, 4)
# Pairwise agreements (x10000, floored): a.b = 50/68 -> 7352, a.c = 33/38 -> 8684, b.c = 44/68 -> 6470.
# Each score is the lower median of the others' agreements, squared / 10000:
# A: min(7352, 8684)^2 -> 5405; B: min(7352, 6470)^2 -> 4186; C: min(8684, 6470)^2 -> 4186.
SA, SB, SC = 5405, 4186, 4186


def test_the_layout_is_the_one_the_numbers_assume(nspec: NodeSpec) -> None:
    assert dict(nspec.layout) == {"0.weight": (1, 2), "0.bias": (1,)}
    assert nspec.rule == "fedavg"


def test_fedavg_of_integer_updates_is_the_exact_floored_mean(nspec: NodeSpec) -> None:
    out = round_outcome(nspec, BASE, [got(A, UA), got(B, UB), got(C, UC)], [A, B, C])
    # sum (8, -10, 15) // 3 = (2, -4, 5): floor division, so -10/3 gives -4, not -3
    assert flat(out.model) == [102, 196, 305]
    assert out.model["0.weight"].dtype == np.int64 and out.model["0.weight"].shape == (1, 2)
    assert out.scores == [SA, SB, SC]
    assert out.used == 3
    assert out.rejected == {}


def test_rejected_updates_keep_their_reason_and_score_zero(nspec: NodeSpec) -> None:
    fetched = [got(A, UA), got(B, UB), lost(C, "malformed: update header is not JSON")]
    out = round_outcome(nspec, BASE, fetched, [A, B, C])
    assert out.rejected == {C: "malformed: update header is not JSON"}
    # A and B alone: each one's only agreement is 7352, squared -> 5405
    assert out.scores == [5405, 5405, 0]
    assert out.used == 2
    # (2 + 4) // 2, (-3 - 4) // 2 = -4, (5 + 6) // 2 = 5: the rejected update plays no part
    assert flat(out.model) == [103, 196, 305]


def test_an_update_equal_to_the_last_global_step_is_rejected(nspec: NodeSpec) -> None:
    previous = params(90, 210, 299)
    step = params(10, -10, 1)  # BASE - previous: public, so copying it is no work
    fetched = [got(A, UA), got(B, UB), got(C, step)]
    out = round_outcome(nspec, BASE, fetched, [A, B, C], previous)
    assert out.rejected == {C: "copies the last global step"}
    assert out.scores == [5405, 5405, 0]
    assert out.used == 2
    assert flat(out.model) == [103, 196, 305]
    # without `previous` (base is the initial model) the same update is used like any other
    plain = round_outcome(nspec, BASE, fetched, [A, B, C])
    assert plain.rejected == {} and plain.used == 3
    assert flat(plain.model) == [100 + (2 + 4 + 10) // 3, 200 + (-3 - 4 - 10) // 3, 300 + (5 + 6 + 1) // 3]


def test_a_copy_of_the_step_is_rejected_even_next_to_an_already_rejected_update(nspec: NodeSpec) -> None:
    previous = params(100, 200, 299)
    fetched = [got(A, UA), got(B, params(0, 0, 1)), lost(C, "duplicate of another member's update")]
    out = round_outcome(nspec, BASE, fetched, [A, B, C], previous)
    assert out.rejected == {B: "copies the last global step", C: "duplicate of another member's update"}
    assert out.used == 1
    assert flat(out.model) == [102, 197, 305]
    assert out.scores == [10_000, 0, 0]  # a lone non-zero update earns the full SCALE


def test_the_input_updates_are_not_modified(nspec: NodeSpec) -> None:
    previous = params(90, 210, 299)
    fetched = [got(A, UA), got(B, UB), got(C, params(10, -10, 1)), lost(R, "unavailable: gone")]
    before = list(fetched)
    arrays = [None if f.update is None else {k: v.copy() for k, v in f.update.items()} for f in fetched]
    base_copy = {k: v.copy() for k, v in BASE.items()}
    out = round_outcome(nspec, BASE, fetched, [A, B, C, R], previous)
    assert out.used == 2
    assert len(fetched) == 4 and all(x is y for x, y in zip(fetched, before, strict=True))
    for f, saved in zip(fetched, arrays, strict=True):
        if saved is None:
            assert f.update is None
            continue
        assert f.update is not None and f.reason == ""
        assert set(f.update) == set(saved)
        for k, v in saved.items():
            assert np.array_equal(f.update[k], v) and f.update[k].dtype == np.int64
    assert fetched[3].reason == "unavailable: gone"
    for k, v in base_copy.items():
        assert np.array_equal(BASE[k], v)
    with pytest.raises(AttributeError):
        fetched[0].update = None  # type: ignore[misc]


def test_no_usable_update_leaves_the_base_model_and_pays_nobody(nspec: NodeSpec) -> None:
    fetched = [lost(A, "unavailable: gone"), lost(B, "malformed: too short"), got(C, params(10, -10, 1))]
    out = round_outcome(nspec, BASE, fetched, [A, B, C, R], params(90, 210, 299))
    assert flat(out.model) == flat(BASE)
    assert out.scores == [0, 0, 0, 0]
    assert out.used == 0
    assert out.rejected == {
        A: "unavailable: gone",
        B: "malformed: too short",
        C: "copies the last global step",
    }
    empty = round_outcome(nspec, BASE, [], [A, B])
    assert flat(empty.model) == flat(BASE) and empty.scores == [0, 0] and empty.used == 0 and empty.rejected == {}


def test_scores_are_placed_by_join_order_matching_addresses_case_insensitively(nspec: NodeSpec) -> None:
    fetched = [got(A, UA), got(B, UB), got(C, UC), lost(R, "unavailable: gone")]  # sorted by address
    # join order differs from address order, addresses in lower case; X revealed nothing
    members = [m.lower() for m in (C, X, R, A, B)]
    out = round_outcome(nspec, BASE, fetched, members)
    assert out.scores == [SC, 0, 0, SA, SB]
    assert out.used == 3
    assert out.rejected == {R: "unavailable: gone"}
    upper = round_outcome(nspec, BASE, fetched, ["0x" + m[2:].upper() for m in (B, A)])
    assert upper.scores == [SB, SA]  # only members listed get a score, in their order
