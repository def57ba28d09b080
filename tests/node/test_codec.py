"""The update codec: canonical bytes, safetensors compatibility, and rejection of bad input."""

from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from node.core.codec import MAX_ABS, UpdateRejected, content_hash, decode, encode, from_fixed, to_fixed

LAYOUT = {"w": (2, 3), "b": (3,)}


def sample() -> dict[str, np.ndarray]:
    return {"w": np.arange(6, dtype=np.int64).reshape(2, 3) - 3, "b": np.array([7, -8, 9], dtype=np.int64)}


def test_round_trip_and_canonical_bytes() -> None:
    u = sample()
    data = encode(u)
    back = decode(data, LAYOUT)
    assert all(np.array_equal(back[k], u[k]) for k in u)
    assert encode(dict(reversed(list(u.items())))) == data  # insertion order does not matter
    assert content_hash(data) == content_hash(encode(sample()))


def test_safetensors_reads_ours_and_we_read_its_files() -> None:
    data = encode(sample())
    theirs = st_load(data)
    assert all(np.array_equal(theirs[k], sample()[k]) for k in LAYOUT)
    assert all(np.array_equal(v, sample()[k]) for k, v in decode(st_save(sample()), LAYOUT).items())


def test_fixed_point_round_trip() -> None:
    x = np.array([0.5, -1.25, 3e-8, 1000.0])
    fx = to_fixed(x)
    assert fx.tolist()[:2] == [1 << 23, -(5 << 22)]
    assert fx[3] == MAX_ABS  # clipped
    assert np.allclose(from_fixed(fx)[:3], x[:3], atol=2**-24)
    with pytest.raises(UpdateRejected, match="non-finite"):
        to_fixed(np.array([np.nan]))


def _with_header(header: dict[str, object], body: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (encode(sample())[:-8], "the model needs"),
        (encode(sample()) + b"\0" * 8, "the model needs"),
        (struct.pack("<Q", 1 << 40) + b"{}", "the model needs"),
        (encode({"w": np.zeros((3, 2), np.int64), "b": np.zeros(3, np.int64)}), "does not match"),
        (encode({"w": np.zeros((2, 3), np.int64), "c": np.zeros(3, np.int64)}), "has parameters"),
        (encode({**sample(), "b": np.array([0, MAX_ABS + 1, 0], np.int64)}), "beyond"),
        (
            _with_header(
                {
                    "b": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]},
                    "w": {"dtype": "I64", "shape": [2, 3], "data_offsets": [24, 72]},
                },
                b"\0" * 72,
            ),
            "does not match",
        ),
        (
            _with_header(
                {
                    "w": {"dtype": "I64", "shape": [2, 3], "data_offsets": [0, 48]},
                    "b": {"dtype": "I64", "shape": [3], "data_offsets": [48, 72]},
                },
                b"\0" * 72,
            ),
            "does not match",
        ),  # valid safetensors, but not in canonical (sorted) layout
        (struct.pack("<Q", 8) + b"not json" + b"\0" * 72, "not JSON"),
        (_with_header({"__metadata__": {}, "w": {}}, b"\0" * 72), "has parameters"),
    ],
)
def test_bad_updates_are_rejected_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(UpdateRejected, match=message):
        decode(data, LAYOUT)


@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(UpdateRejected):
        decode(data, LAYOUT)


@given(st.binary(min_size=1, max_size=16), st.integers(0, 200))
def test_corrupting_a_valid_update_is_caught(patch: bytes, at: int) -> None:
    data = bytearray(encode(sample()))
    at %= len(data)
    data[at : at + len(patch)] = patch
    try:
        back = decode(bytes(data), LAYOUT)
    except UpdateRejected:
        return
    # it parsed: then it is a well-formed update of the right layout (only values changed)
    assert set(back) == set(LAYOUT)
    assert all(back[k].shape == LAYOUT[k] for k in LAYOUT)
