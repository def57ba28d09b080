"""What vertical parties send each other during training: float32 matrices, checked on receipt.

An embedding (feature party -> owner) or a gradient (owner -> feature party) is
a row-major float32 matrix: an 8-byte magic, rows and columns (uint32,
big-endian), then the values little-endian. A received message is untrusted:
its size is bounded before it is read, and its magic, its shape (the rows and
width the receiver expects for that batch) and every value (finite) are
checked, or it is refused with a one-line `MessageError`. Nothing is unpickled.

Each member commits, once per epoch, the Merkle root of the sha256 digests of
the messages it sent that epoch, in order (`merkle_root`): the audit trail
binds every message without a transaction per message.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from node.errors import NodeError

__all__ = [
    "BOUND",
    "MessageError",
    "decode_matches",
    "decode_matrix",
    "decode_reply",
    "encode_matches",
    "encode_matrix",
    "encode_reply",
    "matches_size",
    "matrix_size",
    "merkle_root",
    "reply_size",
]

_MAGIC = b"FCVEC1\x00\x00"
_HEADER = struct.Struct(">8sII")
_REPLY = struct.Struct(">8sI")
_REPLY_MAGIC = b"FCSCR1\x00\x00"
_MATCHES_MAGIC = b"FCSCM1\x00\x00"
_POINT = 32
_POSITION = struct.Struct(">I")
_LEAF = b"\x00"
_NODE = b"\x01"
BOUND = 1e6  # no honest embedding or gradient comes near this


class MessageError(NodeError):
    """A party's message that cannot be used: wrong kind, shape or size, or values that are not finite."""


def matrix_size(rows: int, cols: int) -> int:
    """The exact size in bytes of a `rows` x `cols` message."""
    return _HEADER.size + 4 * rows * cols


def encode_matrix(values: npt.NDArray[np.floating]) -> bytes:
    """A 2-d array as a message (float32)."""
    if values.ndim != 2:
        raise MessageError(f"a message is a matrix, not {values.ndim}-d")
    rows, cols = values.shape
    return _HEADER.pack(_MAGIC, rows, cols) + np.ascontiguousarray(values, dtype="<f4").tobytes()


def decode_matrix(data: bytes, rows: int, cols: int, what: str, bound: float = BOUND) -> npt.NDArray[np.float32]:
    """The `rows` x `cols` matrix in `data` (from a peer: untrusted), or MessageError saying what is wrong
    (values must be finite and at most `bound` in magnitude: a huge one would swamp the receiver's model)."""
    if len(data) < _HEADER.size:
        raise MessageError(f"{what}: {len(data)} bytes, not a fedchain matrix")
    magic, got_rows, got_cols = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise MessageError(f"{what}: not a fedchain matrix (bad magic)")
    if (got_rows, got_cols) != (rows, cols):
        raise MessageError(f"{what}: shape {got_rows}x{got_cols}, expected {rows}x{cols}")
    if len(data) != matrix_size(rows, cols):
        raise MessageError(f"{what}: {len(data)} bytes for {rows}x{cols} values")
    values = np.frombuffer(data, dtype="<f4", offset=_HEADER.size).reshape(rows, cols).astype(np.float32)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise MessageError(f"{what}: {bad} values are NaN or infinite")
    huge = int((np.abs(values) > bound).sum())
    if huge:
        raise MessageError(f"{what}: {huge} values exceed {bound:g} in magnitude")
    return values


def reply_size(rows: int, cols: int) -> int:
    """The exact size in bytes of a scoring reply with `rows` embeddings of width `cols`."""
    return _REPLY.size + _POSITION.size * rows + matrix_size(rows, cols)


def encode_reply(positions: Sequence[int], embeddings: npt.NDArray[np.floating]) -> bytes:
    """A feature party's answer to a scoring request: the positions (in the owner's list of the customers
    it asked about) of those the party holds, increasing, and their embeddings, row for row."""
    if len(positions) != len(embeddings):
        raise MessageError(f"{len(positions)} positions for {len(embeddings)} embeddings")
    body = b"".join(_POSITION.pack(p) for p in positions)
    return _REPLY.pack(_REPLY_MAGIC, len(positions)) + body + encode_matrix(embeddings)


def decode_reply(data: bytes, asked: int, cols: int, what: str) -> tuple[list[int], npt.NDArray[np.float32]]:
    """A scoring reply (from a peer: untrusted) to a request about `asked` customers: its positions
    (strictly increasing, each below `asked`) and its embeddings (checked like any matrix)."""
    rows = _count(data, _REPLY_MAGIC, "a scoring reply", asked, what)
    if len(data) != reply_size(rows, cols):
        raise MessageError(f"{what}: {len(data)} bytes for {rows} rows of {cols}")
    positions = _positions(data, _REPLY.size, rows, _POSITION.size, asked, what)
    matrix = decode_matrix(data[_REPLY.size + _POSITION.size * rows :], rows, cols, what)
    return positions, matrix


def _count(data: bytes, magic: bytes, kind: str, asked: int, what: str) -> int:
    """How many rows a scoring message announces: its magic checked, at most `asked`."""
    if len(data) < _REPLY.size:
        raise MessageError(f"{what}: {len(data)} bytes, not {kind}")
    found, rows = _REPLY.unpack_from(data)
    if found != magic:
        raise MessageError(f"{what}: not {kind} (bad magic)")
    if rows > asked:
        raise MessageError(f"{what}: {rows} rows for {asked} customers asked about")
    return int(rows)


def _positions(data: bytes, at: int, rows: int, stride: int, asked: int, what: str) -> list[int]:
    """`rows` positions (uint32) from `at`, `stride` bytes apart: strictly increasing, each below `asked`."""
    positions = [_POSITION.unpack_from(data, at + stride * i)[0] for i in range(rows)]
    if any(b <= a for a, b in pairwise(positions)):
        raise MessageError(f"{what}: positions are not strictly increasing")
    if positions and positions[-1] >= asked:
        raise MessageError(f"{what}: position {positions[-1]}, past the {asked} customers asked about")
    return positions


def matches_size(rows: int) -> int:
    """The exact size in bytes of an owner's list of `rows` matched prospects."""
    return _REPLY.size + (_POSITION.size + _POINT) * rows


def encode_matches(positions: Sequence[int], points: Sequence[bytes]) -> bytes:
    """The owner's matched prospects in a scoring request: per prospect the party holds, its position in
    the owner's list and its id blinded by the party's second secret alone, increasing by position."""
    if len(positions) != len(points):
        raise MessageError(f"{len(positions)} positions for {len(points)} points")
    body = b"".join(_POSITION.pack(i) + p for i, p in zip(positions, points, strict=True))
    return _REPLY.pack(_MATCHES_MAGIC, len(positions)) + body


def decode_matches(data: bytes, asked: int, what: str) -> tuple[list[int], list[bytes]]:
    """The owner's matched prospects (untrusted): positions strictly increasing and below `asked`, points
    not repeated (they are only compared with the party's own, so they need no other check)."""
    rows = _count(data, _MATCHES_MAGIC, "a list of matches", asked, what)
    if len(data) != matches_size(rows):
        raise MessageError(f"{what}: {len(data)} bytes for {rows} matches")
    stride = _POSITION.size + _POINT
    positions = _positions(data, _REPLY.size, rows, stride, asked, what)
    at = _REPLY.size + _POSITION.size
    points = [data[at + stride * i : at + stride * i + _POINT] for i in range(rows)]
    if len(set(points)) != rows:
        raise MessageError(f"{what}: repeated points")
    return positions, points


def merkle_root(digests: Sequence[bytes]) -> bytes:
    """The root of a binary sha256 Merkle tree over `digests` in order (leaves and inner nodes are
    domain-separated; an odd node is carried up unchanged); 32 zero bytes for none."""
    if not digests:
        return bytes(32)
    level = [hashlib.sha256(_LEAF + d).digest() for d in digests]
    while len(level) > 1:
        nxt = [hashlib.sha256(_NODE + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
