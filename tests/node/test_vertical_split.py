"""Split learning's parts: messages checked on receipt, Merkle roots, Shapley values and shares,
and the owner and a party trained through messages only (equal to training in one place)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from node.errors import NodeError
from node.vertical.messages import BOUND, MessageError, decode_matrix, encode_matrix, matrix_size, merkle_root
from node.vertical.party import FeatureParty, OwnerParty
from node.vertical.psi import Alignment
from node.vertical.shapley import shapley, shares_bps, table_bytes
from node.vertical.split import Batches, SplitSpec

SPEC = SplitSpec(kind="logreg", embed=2, epochs=2, batch_size=64, lr=0.05, seed=3)


def test_a_matrix_round_trips_and_every_malformed_message_is_refused() -> None:
    values = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    data = encode_matrix(values)
    assert len(data) == matrix_size(4, 3)
    assert np.array_equal(decode_matrix(data, 4, 3, "m"), values)
    nan = values.copy()
    nan[1, 2] = np.nan
    inf = values.copy()
    inf[0, 0] = -np.inf
    huge = values.copy()
    huge[3, 1] = 10 * BOUND
    for bad, why in (
        (data[:10], "not a fedchain matrix"),
        (b"X" * len(data), "bad magic"),
        (encode_matrix(values[:3]), "shape 3x3, expected 4x3"),
        (encode_matrix(values[:, :2]), "shape 4x2, expected 4x3"),
        (data + b"\x00" * 4, "bytes for 4x3 values"),
        (data[:-4], "bytes for 4x3 values"),
        (encode_matrix(nan), "1 values are NaN or infinite"),
        (encode_matrix(inf), "1 values are NaN or infinite"),
        (encode_matrix(huge), "exceed"),
    ):
        with pytest.raises(MessageError, match=why):
            decode_matrix(bad, 4, 3, "m")


def test_merkle_roots_bind_every_message_and_its_order() -> None:
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    root = merkle_root(digests)
    assert merkle_root(digests) == root and len(root) == 32
    assert merkle_root(digests[:4]) != root
    assert merkle_root([digests[1], digests[0], *digests[2:]]) != root
    assert merkle_root([*digests[:4], hashlib.sha256(b"x").digest()]) != root
    assert merkle_root([]) == bytes(32)
    assert merkle_root(digests[:1]) != digests[0]  # a leaf is hashed: a root is never a bare digest


def test_shapley_values_are_exact_on_a_game_with_known_values() -> None:
    # v(S) = sum of the members' weights + a bonus of 1 when a and b are both in: a and b share the bonus.
    weights = {"a": 1.0, "b": 2.0, "c": 0.0}
    phi, table = shapley(list(weights), lambda s: sum(weights[p] for p in s) + (1.0 if {"a", "b"} <= s else 0.0))
    assert len(table) == 8
    assert phi == pytest.approx({"a": 1.5, "b": 2.5, "c": 0.0})
    assert sum(phi.values()) == pytest.approx(table[frozenset(weights)] - table[frozenset()])
    assert b'"shapley"' in table_bytes(list(weights), table, phi)
    with pytest.raises(NodeError, match="at most 8"):
        shapley([str(i) for i in range(9)], lambda s: 0.0)


def test_shares_pay_the_positive_values_and_always_the_whole_pool() -> None:
    assert shares_bps([0.02, 0.01, -0.005], [True, True, True]) == [6667, 3333, 0]
    assert shares_bps([0.0, -1.0], [True, True]) == [5000, 5000]  # nobody helped: split equally
    assert shares_bps([0.5, 0.5, 0.5], [True, False, True]) == [5000, 0, 5000]  # a dropped party gets nothing
    assert shares_bps([1.0, 1.0, 1.0], [True, True, True]) == [3334, 3333, 3333]
    assert shares_bps([1.0], [False]) == [0]
    for values in ([0.3, 0.1, 0.7, 0.0001], [1e-9, 2e-9, 3e-9]):
        assert sum(shares_bps(values, [True] * len(values))) == 10_000


def _toy(n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    rng = np.random.default_rng(0)
    own = rng.normal(size=(n, 2)).astype(np.float32)
    theirs = rng.normal(size=(n, 3)).astype(np.float32)
    logit = own[:, 0] + 2 * theirs[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return own, theirs, y, [hashlib.sha256(b"%d" % i).digest()[:16] for i in range(n)]


def _m(message: bytes, rows: int) -> np.ndarray:
    return decode_matrix(message, rows, SPEC.embed, "test")


def _train_epoch(owner: OwnerParty, party: FeatureParty, batches: Batches, e: int, sent: list[bytes]) -> None:
    for batch in batches.epoch(e):
        sent.append(party.forward(batch))
        _, grads = owner.step(batch, {"hotel": _m(sent[-1], len(batch))})
        sent.append(grads["hotel"])
        party.backward(_m(grads["hotel"], len(batch)))


def _roles(n: int = 400) -> tuple[OwnerParty, FeatureParty, Batches]:
    own, theirs, y, ids = _toy(n)
    alignment = Alignment({s: i for i, s in enumerate(ids)})
    owner = OwnerParty(own, y, alignment, ["hotel"], SPEC)
    party = FeatureParty("hotel", theirs, alignment, SPEC)
    return owner, party, Batches.of(ids, SPEC)


def test_training_through_messages_learns_from_the_partys_columns() -> None:
    owner, party, batches = _roles()

    def embedded(rows: list[bytes]) -> dict[str, np.ndarray | None]:
        return {"hotel": _m(party.embed(rows), len(rows))}

    before = owner.auc(batches.valid, embedded(batches.valid))
    for e in range(SPEC.epochs):
        _train_epoch(owner, party, batches, e, [])
        owner.close_epoch()
    with_party = owner.auc(batches.test, embedded(batches.test))
    without = owner.auc(batches.test, {"hotel": None})  # masked by its mean embedding
    assert with_party > without + 0.05 and with_party > before
    phi, _ = owner.value(batches.valid, embedded(batches.valid))
    assert phi["hotel"] > 0.05


def test_two_runs_with_the_same_seeds_are_bit_identical() -> None:
    runs = []
    for _ in range(2):
        owner, party, batches = _roles()
        sent: list[bytes] = []
        _train_epoch(owner, party, batches, 0, sent)
        scores = owner.scores(batches.test, {"hotel": _m(party.embed(batches.test), len(batches.test))})
        runs.append((scores, merkle_root(sent)))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]


def test_a_party_refuses_a_gradient_for_no_embedding_and_rows_outside_its_alignment() -> None:
    owner, party, batches = _roles()
    batch = batches.epoch(0)[0]
    _, grads = owner.step(batch, {"hotel": _m(party.forward(batch), len(batch))})
    party.backward(_m(grads["hotel"], len(batch)))
    with pytest.raises(NodeError, match="no embedding sent"):
        party.backward(_m(grads["hotel"], len(batch)))
    with pytest.raises(NodeError, match="outside the alignment"):
        party.forward([b"\x00" * 16])


def test_batches_split_the_same_way_for_every_party_and_cover_the_training_rows() -> None:
    ids = [hashlib.sha256(b"%d" % i).digest()[:16] for i in range(1000)]
    a, b = Batches.of(ids, SPEC), Batches.of(list(reversed(ids)), SPEC)
    assert a == b
    assert math.isclose(len(a.test) / 1000, SPEC.test_share, abs_tol=0.05)
    epoch = a.epoch(0)
    assert sorted(s for batch in epoch for s in batch) == sorted(a.train)
    assert epoch != a.epoch(1)
    with pytest.raises(NodeError, match="too few"):
        Batches.of(ids[:2], SPEC)


def test_a_bottom_model_is_a_torch_module_of_the_spec_kind() -> None:
    mlp = FeatureParty("x", np.zeros((3, 5), dtype=np.float32), Alignment({}), SplitSpec(kind="mlp", hidden=7))
    assert isinstance(mlp.bottom.net, torch.nn.Sequential)
    with pytest.raises(NodeError, match="kind"):
        SplitSpec.from_spec({"kind": "forest"})
    with pytest.raises(NodeError, match="unknown keys"):
        SplitSpec.from_spec({"depth": 3})
