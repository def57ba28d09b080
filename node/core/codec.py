"""Model updates as fixed-point integers in a canonical, code-free byte format.

An update is a mapping from parameter name to an int64 array holding the value
times 2**FRAC_BITS. On the wire it is a safetensors file (readable by the
`safetensors` library) written canonically: no metadata, tensors sorted by
name and laid out in that order, header JSON with sorted keys and no spaces,
padded with spaces to 8 bytes. The same update always gives the same bytes, so
`sha256(bytes)` identifies it.

Bytes fetched from peers are untrusted: `decode` checks the size, the header,
every dtype, shape and offset against the expected parameter layout, the value
range and, for content from peers, that the bytes are the canonical encoding
(so one update has one content hash: duplicate and replay checks compare
hashes), and raises `UpdateRejected` naming the first problem. Nothing is ever
unpickled.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from node.errors import NodeError

__all__ = [
    "FRAC_BITS",
    "MAX_ABS",
    "Layout",
    "UpdateRejected",
    "content_hash",
    "decode",
    "encode",
    "from_fixed",
    "to_fixed",
]

FRAC_BITS = 24
SCALE = 1 << FRAC_BITS
MAX_ABS = (1 << 31) - 1  # |value| < 128 in real units: bounds every aggregate in int64
_MAX_HEADER = 1 << 20

IntArray = npt.NDArray[np.int64]
Layout = Mapping[str, tuple[int, ...]]  # parameter name -> shape


class UpdateRejected(NodeError):
    """An update's bytes are malformed, oversized, out of range, or do not fit the model."""


def to_fixed(values: npt.NDArray[np.floating]) -> IntArray:
    """Round float values to fixed point (round half to even), clipped to the allowed range."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * SCALE)
    if not np.all(np.isfinite(scaled)):
        raise UpdateRejected("update has non-finite values")
    return np.clip(scaled, -MAX_ABS, MAX_ABS).astype(np.int64)


def from_fixed(values: IntArray) -> npt.NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64) / SCALE


def encode(update: Mapping[str, IntArray]) -> bytes:
    """The canonical safetensors bytes of `update`."""
    header: dict[str, dict[str, object]] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(update):
        arr = np.ascontiguousarray(update[name], dtype="<i8")
        data = arr.tobytes()
        header[name] = {"dtype": "I64", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(chunks)


def content_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _expected_size(layout: Layout) -> int:
    return sum(8 * int(np.prod(shape, dtype=np.int64)) for shape in layout.values())


def decode(data: bytes, layout: Layout, canonical: bool = False) -> dict[str, IntArray]:
    """Parse untrusted bytes into an update of exactly `layout`, or raise UpdateRejected; with `canonical`,
    also unless they are exactly what `encode` writes for it (any safetensors writer's file decodes without)."""
    body = _expected_size(layout)
    if len(data) < 8:
        raise UpdateRejected(f"update is {len(data)} bytes, too short for a header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n + body != len(data):
        raise UpdateRejected(f"update is {len(data)} bytes; the model needs a header plus {body} bytes of values")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise UpdateRejected("update header is not JSON") from exc
    if not isinstance(header, dict) or set(header) != set(layout):
        names = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise UpdateRejected(f"update has parameters {names}, the model has {sorted(layout)}")
    out: dict[str, IntArray] = {}
    offset = 0
    values = memoryview(data)[8 + n :]
    for name in sorted(layout):
        entry, shape = header[name], list(layout[name])
        size = 8 * int(np.prod(shape, dtype=np.int64))
        want = {"dtype": "I64", "shape": shape, "data_offsets": [offset, offset + size]}
        if entry != want:
            raise UpdateRejected(f"parameter {name!r}: header {entry} does not match the model's {want}")
        arr = np.frombuffer(values[offset : offset + size], dtype="<i8").astype(np.int64).reshape(shape)
        if arr.size and int(np.abs(arr).max()) > MAX_ABS:
            raise UpdateRejected(f"parameter {name!r} has values beyond +-{MAX_ABS} (fixed point 2^-{FRAC_BITS})")
        out[name] = arr
        offset += size
    if canonical and encode(out) != data:  # e.g. header keys reordered or spaced: same values, another hash
        raise UpdateRejected("update is not in the canonical encoding (the same values must give the same bytes)")
    return out
