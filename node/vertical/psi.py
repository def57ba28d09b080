"""ECDH private set intersection over the prime-order subgroup of edwards25519 (libsodium, via PyNaCl).

The task owner, with ids X, runs it with each feature party, with ids Y; each
side holds a fresh secret scalar for the pair (a, b). Each id is hashed to the
group, domain-separated by the task (`task_tag`): H(x) = from_uniform(SHA-512(
DOMAIN | tag | x)[:32]), a point in the prime-order subgroup (Elligator 2,
cofactor cleared, by libsodium).

1. The owner sends a*H(x) for every x, sorted by value (not in its row order);
   the party sends b*H(y) likewise.
2. The party multiplies the owner's points by b and sends them back in the
   order received: the owner gets ab*H(x) for its own x. The owner multiplies
   the party's points by a itself, and keeps them: ab*H(y) for every y, in the
   order the party sent them.
3. The owner matches: its x is shared with the party exactly when ab*H(x) is
   among the ab*H(y), and it knows where that y stood in the party's list.

It is one-sided: the party gets nothing back but, once the owner has run this
with every party, the alignment (`Alignment`): for each customer every party
shares with the owner, the position of that customer in the party's own list
and a random sample id. So a party learns which of its customers are aligned,
and nothing else: not its pairwise intersection with the owner (which, next to
the alignment, would tell it which shared customers some other party lacks).
The owner learns, per party, which of its customers that party holds.

Each side learns the other's set size; under the decisional Diffie-Hellman
assumption the points of an id it does not hold look random to it. Every point
received that is multiplied by a secret must be a canonical encoding of a point
in the prime-order subgroup (libsodium's scalar multiplication refuses any
other); points that are only compared with one's own are not checked (one
outside the group matches nothing). A list is refused if it repeats a point
(ids are unique on both sides, so a repeat is an attack or a bug), and a
message is refused if it is longer than the sender's announced set. No curve
arithmetic is written here: hashing to the group, scalar multiplication and
point validation are libsodium's.

From then on rows are indexed by the sample ids, never by the match keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TypeVar

import nacl.exceptions
from nacl.bindings import (
    crypto_core_ed25519_from_uniform,
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_invert,
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult_ed25519_noclamp,
)

from node.errors import NodeError

__all__ = [
    "DOMAIN",
    "MAX_SET",
    "Alignment",
    "PsiError",
    "align_in_memory",
    "PsiParty",
    "decode_points",
    "encode_points",
    "hash_to_group",
    "point_count",
    "split_messages",
    "task_tag",
]

DOMAIN = b"fedchain/psi/v1/edwards25519/elligator2"
POINT = 32
MAX_SET = 2_000_000  # the most ids a party may bring to a task (64 MB of points)
SAMPLE_ID = 16
_MAGIC = b"FCPSI1\x00\x00"  # 8 bytes, then the count (uint32, big-endian), then the points
_HEADER = struct.Struct(">8sI")
_ALIGN_MAGIC = b"FCALN1\x00\x00"
_POSITION = struct.Struct(">I")

_X = TypeVar("_X")
_Y = TypeVar("_Y")
_CHUNK = 2048  # points per task: libsodium's ~60 us a multiplication makes a task ~0.1 s


def _on_every_core(work: Callable[[Sequence[_X]], list[_Y]], items: Sequence[_X]) -> list[_Y]:
    """`work` over `items` in chunks on a thread per core (libsodium runs without the GIL), in order."""
    workers = min(os.cpu_count() or 1, -(-len(items) // _CHUNK))
    if workers <= 1:
        return work(items)
    size = -(-len(items) // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(work, [items[i : i + size] for i in range(0, len(items), size)])
        return [y for part in parts for y in part]


class PsiError(NodeError):
    """A PSI input or message that cannot be used (one line, says what and how much)."""


def task_tag(chain_id: int, contract: str, task_id: int) -> bytes:
    """What separates one task's hash-to-group from every other task's: chain, contract and task."""
    return hashlib.sha256(b"%d|%s|%d" % (chain_id, contract.lower().encode(), task_id)).digest()


def hash_to_group(tag: bytes, key: str) -> bytes:
    """`key` as a point of the prime-order group, for task `tag` (never sent: only its multiples are)."""
    digest = hashlib.sha512(DOMAIN + b"|" + tag + b"|" + key.encode()).digest()
    return bytes(crypto_core_ed25519_from_uniform(digest[:32]))


def _fresh_scalar() -> bytes:
    """A uniform nonzero scalar mod the group order, from 64 random bytes (reduced by libsodium)."""
    while True:
        s = bytes(crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64)))
        if any(s):
            return s


def encode_points(points: Sequence[bytes]) -> bytes:
    """A list of points as sent between parties: magic, count, then 32 bytes each."""
    return _HEADER.pack(_MAGIC, len(points)) + b"".join(points)


def point_count(data: bytes, what: str, limit: int) -> int:
    """How many points a PSI message announces (at most `limit`: a set larger than the task allows is refused)."""
    if len(data) < _HEADER.size:
        raise PsiError(f"{what}: {len(data)} bytes, not a PSI message")
    magic, count = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise PsiError(f"{what}: not a PSI message (bad magic)")
    if count > limit:
        raise PsiError(f"{what}: {count} points, more than the {limit} allowed")
    return int(count)


def decode_points(data: bytes, expected: int, what: str, validate: bool = True) -> list[bytes]:
    """The `expected` points in `data` (a peer's message: untrusted), none repeated, each checked to be
    in the prime-order group unless `validate` is False: for points that are only compared with this
    party's own (a point that is not one of them matches nothing), or that go straight into libsodium's
    scalar multiplication, which makes the same check itself (`PsiParty.reblind`)."""
    if len(data) < _HEADER.size:
        raise PsiError(f"{what}: {len(data)} bytes, not a PSI message")
    magic, count = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise PsiError(f"{what}: not a PSI message (bad magic)")
    if count != expected:
        raise PsiError(f"{what}: {count} points, expected {expected}")
    if len(data) != _HEADER.size + POINT * count:
        raise PsiError(f"{what}: {len(data)} bytes for {count} points")
    points = [data[_HEADER.size + POINT * i : _HEADER.size + POINT * (i + 1)] for i in range(count)]
    if len(set(points)) != count:
        raise PsiError(f"{what}: {count - len(set(points))} repeated points")
    for i, p in enumerate(points if validate else ()):
        if not crypto_core_ed25519_is_valid_point(p):
            raise PsiError(f"{what}: point {i} is not in the prime-order group")
    return points


def split_messages(data: bytes, parts: int, what: str, limit: int) -> list[bytes]:
    """`parts` PSI messages sent back to back, each at most `limit` points, split (the whole must be used)."""
    out, at = [], 0
    for i in range(parts):
        count = point_count(data[at:], f"{what} (part {i + 1})", limit)
        size = _HEADER.size + POINT * count
        if len(data) < at + size:
            raise PsiError(f"{what} (part {i + 1}): {len(data) - at} bytes for {count} points")
        out.append(data[at : at + size])
        at += size
    if at != len(data):
        raise PsiError(f"{what}: {len(data) - at} bytes after its {parts} parts")
    return out


@dataclass
class PsiParty:
    """One side of a two-party PSI: its ids (one per row, unique), the task's tag, a fresh secret."""

    ids: Sequence[str]
    tag: bytes
    _secret: bytes = field(default_factory=_fresh_scalar, repr=False)
    _order: list[int] = field(default_factory=list, repr=False)  # the rows in the order sent

    def __post_init__(self) -> None:
        if not self.ids:
            raise PsiError("no ids to intersect")
        repeated = sorted(k for k, n in Counter(self.ids).items() if n > 1)
        if repeated:
            raise PsiError(f"{len(repeated)} ids appear more than once (e.g. {repeated[0]!r}); ids must be unique")

    def _times_secret(self, points: Sequence[bytes], scalar: bytes | None = None) -> list[bytes | None]:
        """Each point times this party's secret (or `scalar`); None for a point libsodium refuses (outside
        the prime-order group: non-canonical, small or mixed order)."""
        out: list[bytes | None] = []
        for p in points:
            try:
                out.append(bytes(crypto_scalarmult_ed25519_noclamp(scalar or self._secret, p)))
            except nacl.exceptions.RuntimeError:
                out.append(None)
        return out

    def _own_points(self) -> list[bytes]:
        """Every id of this side hashed to the group and times its secret, in row order."""
        hashed = _on_every_core(lambda ids: self._times_secret([hash_to_group(self.tag, k) for k in ids]), self.ids)
        points = [p for p in hashed if p is not None]
        if len(points) != len(hashed):  # from_uniform maps into the group: never, but never silently
            raise PsiError("libsodium refused an id hashed to the group")
        return points

    def values(self) -> dict[bytes, int]:
        """This side's points (`_own_points`), each mapped to its row (kept: never sent)."""
        return {p: row for row, p in enumerate(self._own_points())}

    def unblind(self, points: Sequence[bytes], what: str) -> list[bytes]:
        """Points times the inverse of this side's secret: the other side's blinding of our blinded ids,
        with ours taken off (refused if libsodium refuses a point)."""
        inverse = bytes(crypto_core_ed25519_scalar_invert(self._secret))
        out = _on_every_core(lambda chunk: self._times_secret(chunk, inverse), points)
        refused = next((i for i, p in enumerate(out) if p is None), None)
        if refused is not None:
            raise PsiError(f"{what}: point {refused} is not in the prime-order group")
        return [p for p in out if p is not None]

    def blinded(self) -> bytes:
        """Step 1: every id hashed to the group, times this party's secret, sorted by value."""
        points = self._own_points()
        self._order = sorted(range(len(points)), key=points.__getitem__)
        return encode_points([points[i] for i in self._order])

    def reblind(self, theirs: bytes, their_count: int) -> tuple[bytes, list[bytes]]:
        """Step 2: the other's step-1 points times this party's secret, in the order received (to send
        back), and the same as a list (the other's ids' double-blinded values, for matching)."""
        what = "the other party's set"
        points = _on_every_core(self._times_secret, decode_points(theirs, their_count, what, validate=False))
        refused = next((i for i, p in enumerate(points) if p is None), None)
        if refused is not None:
            raise PsiError(f"{what}: point {refused} is not in the prime-order group")
        valid = [p for p in points if p is not None]
        return encode_points(valid), valid

    def export(self) -> tuple[bytes, list[int]]:
        """This side's secret and the order its set was sent in: what a restarted member needs (keep it secret)."""
        return self._secret, list(self._order)

    @classmethod
    def resume(cls, ids: Sequence[str], tag: bytes, secret: bytes, order: Sequence[int]) -> PsiParty:
        """A side from its `export`ed secret and order (a member that restarted)."""
        return cls(ids, tag, secret, list(order))

    @property
    def order(self) -> list[int]:
        """This side's rows in the order its blinded points were sent (position -> row)."""
        return list(self._order)

    def intersect(self, mine_back: bytes, theirs_double: Sequence[bytes]) -> dict[int, bytes]:
        """Step 3 (the owner): its rows in the intersection, each with its double-blinded value, from its
        own points sent back re-blinded by the other and the other's points it re-blinded itself."""
        if not self._order:
            raise PsiError("blinded() must be sent before intersecting")
        back = decode_points(mine_back, len(self._order), "our set, re-blinded by the other party", validate=False)
        shared = set(theirs_double)
        return {self._order[i]: p for i, p in enumerate(back) if p in shared}


@dataclass(frozen=True)
class Alignment:
    """The aligned rows: sample id -> row, for one party. Sample ids are random (chosen by the task
    owner), in the order the owner lists them; they index the training batches, never a match key."""

    rows: dict[bytes, int]

    @staticmethod
    def choose(owner_rows: Sequence[int], key: bytes | None = None) -> list[bytes]:
        """The owner's random sample ids, one per aligned row: fresh random bytes, or with `key` (a secret
        only the owner holds) HMAC-SHA256(key, row), so a rerun with the same key trains on the same
        batches (the ids still look random to every other party)."""
        if key is None:
            ids = [secrets.token_bytes(SAMPLE_ID) for _ in owner_rows]
        else:
            ids = [hmac.new(key, b"%d" % r, hashlib.sha256).digest()[:SAMPLE_ID] for r in owner_rows]
        if len(set(ids)) != len(ids):  # 128 random bits: never in practice, but never silently
            raise PsiError("sample ids collided; run the alignment again")
        return ids

    @staticmethod
    def message(pairs: Sequence[tuple[int, bytes]]) -> bytes:
        """What the owner sends a party: (position of the customer in the party's own blinded list,
        sample id) per aligned customer, sorted by position."""
        ordered = sorted(pairs)
        body = b"".join(_POSITION.pack(pos) + sid for pos, sid in ordered)
        return _HEADER.pack(_ALIGN_MAGIC, len(ordered)) + body

    @classmethod
    def receive(cls, data: bytes, count: int, order: Sequence[int]) -> Alignment:
        """A party's aligned rows from the owner's message (`count` of them: the size posted on chain),
        its positions mapped to rows by `order` (`PsiParty.order`)."""
        if len(data) < _HEADER.size:
            raise PsiError(f"the alignment: {len(data)} bytes, not an alignment")
        magic, n = _HEADER.unpack_from(data)
        if magic != _ALIGN_MAGIC:
            raise PsiError("the alignment: bad magic")
        if n != count:
            raise PsiError(f"the alignment names {n} rows, the intersection posted is {count}")
        entry = _POSITION.size + SAMPLE_ID
        if len(data) != _HEADER.size + entry * n:
            raise PsiError(f"the alignment: {len(data)} bytes for {n} rows")
        at = _HEADER.size
        positions = [_POSITION.unpack_from(data, at + entry * i)[0] for i in range(n)]
        sample_ids = [data[at + entry * i + _POSITION.size : at + entry * (i + 1)] for i in range(n)]
        if any(b <= a for a, b in pairwise(positions)):
            raise PsiError("the alignment's positions are not strictly increasing")
        if positions and positions[-1] >= len(order):
            raise PsiError(f"the alignment names position {positions[-1]}, past our {len(order)} ids")
        if len(set(sample_ids)) != n:
            raise PsiError("the alignment repeats a sample id")
        return cls({sid: order[pos] for pos, sid in zip(positions, sample_ids, strict=True)})


def align_in_memory(
    owner_ids: Sequence[str],
    parties: Mapping[str, Sequence[str]],
    tag: bytes,
    minimum: int = 1,
    sample_key: bytes | None = None,
) -> tuple[dict[str, Alignment], dict[str, list[bytes]]]:
    """A task's PSI and alignment with every message passed in this process (the demo, tests,
    benchmarks; the daemons pass the same bytes through IPFS): each party's `Alignment` (the owner's
    under "owner") and every message each party received, in order.

    The owner runs a one-sided PSI with each feature party, with a fresh secret for each pair; the
    aligned rows are the owner's rows in every intersection; a party learns which of its rows are
    aligned and their sample ids, nothing about the owner's or the other parties' other customers.
    `sample_key`: see `Alignment.choose`. The daemons (`node.vertical.node`) send the same messages
    through IPFS, sealed, step by step.
    """
    received: dict[str, list[bytes]] = {"owner": [], **{name: [] for name in parties}}

    def send(recipient: str, data: bytes) -> bytes:
        received[recipient].append(data)
        return data

    pairwise: dict[str, dict[int, bytes]] = {}  # party -> the owner's rows shared with it -> their pair value
    position: dict[str, dict[bytes, int]] = {}  # party -> pair value -> where it stood in the party's list
    sides: dict[str, PsiParty] = {}
    for name, ids in parties.items():
        owner, party = PsiParty(owner_ids, tag), sides.setdefault(name, PsiParty(ids, tag))
        from_owner = send(name, owner.blinded())
        from_party = send("owner", party.blinded())
        to_owner, _ = party.reblind(from_owner, len(owner_ids))
        to_owner = send("owner", to_owner)
        _, party_double = owner.reblind(from_party, len(ids))  # kept by the owner: never sent
        pairwise[name] = owner.intersect(to_owner, party_double)
        position[name] = {v: j for j, v in enumerate(party_double)}
    rows = sorted(set.intersection(*(set(v) for v in pairwise.values())) if pairwise else set())
    if len(rows) < minimum:
        raise PsiError(f"the parties share {len(rows)} customers, below the task's minimum of {minimum}")
    sample_ids = Alignment.choose(rows, sample_key)
    out = {"owner": Alignment(dict(zip(sample_ids, rows, strict=True)))}
    for name, party in sides.items():
        pairs = [(position[name][pairwise[name][r]], sid) for r, sid in zip(rows, sample_ids, strict=True)]
        out[name] = Alignment.receive(send(name, Alignment.message(pairs)), len(rows), party.order)
    return out, received
