"""`fetch_verified` on the embedded store, and `fetch_update` turning each failure into a rejection."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from eth_utils import to_checksum_address

from ledger.spec import spec_from_dict
from node.core.codec import MAX_ABS, IntArray, UpdateRejected, content_hash, decode, encode
from node.horizontal.exchange import FetchedUpdate, fetch_update
from node.horizontal.spec import NodeSpec
from node.store import EmbeddedStore, StoreError, StoreRefused, fetch_verified, raw_cid
from node.store.verified import ContentMismatch

MEMBER = to_checksum_address("0x" + "ab" * 20)


@pytest.fixture(scope="module")
def nspec() -> NodeSpec:
    spec = spec_from_dict(
        {
            "chain": {"min_peers": 1},
            "members": {"founders": [MEMBER]},
            "data": {"target": "y", "positive": "yes", "numeric": {"f1": [0.0, 1.0], "f2": [0.0, 1.0]}},
            "model": {"kind": "logreg"},
        }
    )
    return NodeSpec.from_federation(spec)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "blobs")


def update(w0: int, w1: int, b: int) -> dict[str, IntArray]:
    return {"0.weight": np.array([[w0, w1]], dtype=np.int64), "0.bias": np.array([b], dtype=np.int64)}


class TamperingStore:
    """A real store (the embedded one) that serves other bytes for one CID: a lying peer's node."""

    def __init__(self, inner: EmbeddedStore, cid: str, served: bytes) -> None:
        self.inner, self.cid, self.served = inner, cid, served

    def put(self, data: bytes) -> str:
        return self.inner.put(data)

    def get(self, cid: str, max_size: int) -> bytes:
        data = self.inner.get(cid, max_size)
        return self.served if cid == self.cid else data


def test_good_bytes_decode_to_the_same_params(store: EmbeddedStore, nspec: NodeSpec) -> None:
    params = update(-7, 1 << 30, MAX_ABS)
    data = encode(params)
    cid = store.put(data)
    out = fetch_verified(store, cid, content_hash(data), nspec.layout, len(data))  # exactly at the cap
    assert set(out) == {"0.weight", "0.bias"}
    for k, v in params.items():
        assert out[k].dtype == np.int64 and out[k].shape == v.shape
        assert np.array_equal(out[k], v)


def test_bytes_that_do_not_hash_to_the_expected_hash_are_a_content_mismatch(
    store: EmbeddedStore, nspec: NodeSpec
) -> None:
    data, other = encode(update(1, 2, 3)), encode(update(1, 2, 4))
    cid = store.put(data)
    with pytest.raises(ContentMismatch, match="does not match its on-chain hash"):
        fetch_verified(store, cid, content_hash(other), nspec.layout, nspec.max_update_bytes)
    # a store serving other (well-formed) bytes under the right CID is caught the same way
    liar = TamperingStore(store, cid, other)
    with pytest.raises(ContentMismatch):
        fetch_verified(liar, cid, content_hash(data), nspec.layout, nspec.max_update_bytes)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00" * 7, "too short"),
        (b"\xff" * 40, "header plus"),
        (encode({**update(1, 2, 3), "extra": np.zeros(1, dtype=np.int64)}), "header plus"),
        (encode({"0.weight": np.zeros((2, 1), dtype=np.int64), "0.bias": np.zeros(1, dtype=np.int64)}), "does not"),
        (encode(update(MAX_ABS + 1, 0, 0)), "beyond"),
    ],
    ids=["short", "garbage", "extra-parameter", "wrong-shape", "out-of-range"],
)
def test_right_hash_but_malformed_bytes_are_rejected_not_a_mismatch(
    store: EmbeddedStore, nspec: NodeSpec, data: bytes, message: str
) -> None:
    cid = store.put(data)
    with pytest.raises(UpdateRejected, match=message) as info:
        fetch_verified(store, cid, content_hash(data), nspec.layout, 10_000)
    assert not isinstance(info.value, ContentMismatch)


def test_content_over_the_size_cap_is_a_store_error(store: EmbeddedStore, nspec: NodeSpec) -> None:
    data = encode(update(1, 2, 3))
    cid = store.put(data)
    with pytest.raises(StoreRefused, match=f"more than the {len(data) - 1} allowed"):  # a StoreError
        fetch_verified(store, cid, content_hash(data), nspec.layout, len(data) - 1)
    big = data + b" " * 8
    big_cid = store.put(big)
    with pytest.raises(StoreError, match="allowed"):
        fetch_verified(store, big_cid, content_hash(big), nspec.layout, nspec.max_update_bytes)


def test_a_missing_cid_is_a_store_error(store: EmbeddedStore, nspec: NodeSpec) -> None:
    data = encode(update(1, 2, 3))
    with pytest.raises(StoreError, match="is not in the store") as info:
        fetch_verified(store, raw_cid(data), content_hash(data), nspec.layout, nspec.max_update_bytes)
    assert not isinstance(info.value, StoreRefused)  # missing may be an outage: not the sender's fault


@pytest.mark.parametrize("bad", ["not-a-cid", "", "../../etc/passwd", "b" + "a" * 10, "Qm" + "0" * 44])
def test_a_string_that_is_not_a_cid_is_a_store_error(store: EmbeddedStore, nspec: NodeSpec, bad: str) -> None:
    with pytest.raises(StoreRefused, match="is not a CID"):  # a StoreError
        fetch_verified(store, bad, bytes(32), nspec.layout, nspec.max_update_bytes)


def test_fetch_update_returns_the_decoded_update(store: EmbeddedStore, nspec: NodeSpec) -> None:
    params = update(5, -6, 7)
    data = encode(params)
    cid = store.put(data)
    f = fetch_update(store, nspec, MEMBER, content_hash(data), cid)
    assert (f.member, f.content_hash, f.cid, f.reason) == (MEMBER, content_hash(data), cid, "")
    assert f.update is not None
    assert all(np.array_equal(f.update[k], params[k]) for k in params)


def rejected(f: FetchedUpdate, member: str, expected: bytes, cid: str) -> str:
    assert (f.member, f.content_hash, f.cid, f.update) == (member, expected, cid, None)
    return f.reason


def test_fetch_update_turns_every_failure_into_a_rejection(store: EmbeddedStore, nspec: NodeSpec) -> None:
    good = encode(update(1, 2, 3))
    cid = store.put(good)
    h = content_hash(good)

    missing = raw_cid(b"never stored")
    reason = rejected(fetch_update(store, nspec, MEMBER, h, missing), MEMBER, h, missing)
    assert reason.startswith("unavailable: ") and "is not in the store" in reason

    reason = rejected(fetch_update(store, nspec, MEMBER, h, "nonsense"), MEMBER, h, "nonsense")
    assert reason.startswith("unavailable: ") and "is not a CID" in reason

    big = good + b" " * (nspec.max_update_bytes - len(good) + 1)
    big_cid = store.put(big)
    reason = rejected(
        fetch_update(store, nspec, MEMBER, content_hash(big), big_cid), MEMBER, content_hash(big), big_cid
    )
    assert reason.startswith("unavailable: ") and "allowed" in reason

    liar = TamperingStore(store, cid, encode(update(1, 2, 4)))
    reason = rejected(fetch_update(liar, nspec, MEMBER, h, cid), MEMBER, h, cid)
    assert reason == "content does not match its on-chain hash"

    junk = b"\x00" * 7
    junk_cid = store.put(junk)
    reason = rejected(
        fetch_update(store, nspec, MEMBER, content_hash(junk), junk_cid), MEMBER, content_hash(junk), junk_cid
    )
    assert reason.startswith("malformed: ") and "too short" in reason


def test_the_same_values_in_another_encoding_are_refused_from_peers(store: EmbeddedStore, nspec: NodeSpec) -> None:
    """A second encoding of one update would get a second content hash past the duplicate and replay checks."""
    data = encode(update(1, 2, 3))
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    head = json.dumps(header, indent=1).encode()  # same header, other whitespace
    head += b" " * (-len(head) % 8)
    other = struct.pack("<Q", len(head)) + head + data[8 + n :]
    mine, theirs = decode(data, nspec.layout), decode(other, nspec.layout)  # any writer's file still decodes
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    cid = store.put(other)
    with pytest.raises(UpdateRejected, match="canonical"):
        fetch_verified(store, cid, content_hash(other), nspec.layout, len(other))
