"""An update only the federation's members can read: one AEAD ciphertext, its key wrapped for each member.

What sealed horizontal federations publish (`node/privacy/sealing.py`). An
update is encrypted once with ChaCha20-Poly1305 under a fresh random key K (so
a zero nonce is safe); K is sealed (HPKE, `node.privacy.seal`) to every
recipient's registered X25519 key, each wrap bound to the chain,
contract, sender, recipient, round and kind. The envelope is:

    magic (8) | n (u16) | n x (recipient address (20) | wrap (80)), by address | key commitment (32) | ciphertext

The ciphertext is under a key derived from K, and a commitment to K (also
derived with HKDF) precedes it: ChaCha20-Poly1305 does not commit to its key,
so without it a sender could make one ciphertext that opens to two contents
under two keys, one for some readers and one for the others. The associated
data binds the place (chain, contract, sender, round, kind), the whole
recipient table and the commitment, so a wrap swapped, a recipient added or
dropped, or the envelope replayed elsewhere makes it refuse to open. A wrap
that does not open, or opens to a key that does not match the commitment, is
`Unreadable`: perhaps for this reader alone, so another recipient may relay
the key (`open_with_key`). Past the commitment, every holder of the key reads
the same content or is refused alike.

The plaintext is a fresh 32-byte blind then the content. Its sha256 (`inner
hash`) is returned for a protocol that would commit to it, and the blind keeps
that hash from confirming a guessed update. Sealed federations commit to the
content's own hash instead (`node/privacy/sealing.py` says why). Everything
that cannot be used raises `EnvelopeError` (one line): a reader treats it as a
malformed update, never a crash. No cryptography is written here: AEAD, HPKE,
HKDF and X25519 are `cryptography`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import is_address, to_canonical_address, to_checksum_address

from node.errors import NodeError
from node.privacy.seal import OVERHEAD, Context, SealError, SealKey, seal

__all__ = [
    "BLIND",
    "EnvelopeError",
    "Opened",
    "Place",
    "Unreadable",
    "open_envelope",
    "open_with_key",
    "seal_envelope",
    "sealable",
]

_MAGIC = b"FCENV2\x00\x00"
_COMMIT = 32  # the key commitment: HKDF(K, "commit"); the ciphertext is under HKDF(K, "encrypt")
_COUNT = struct.Struct(">H")
KEY = 32
BLIND = 32
WRAP = KEY + OVERHEAD  # a sealed key: the encapsulated key, the key, the tag
_ENTRY = 20 + WRAP
_TAG = 16
_NONCE = bytes(12)  # every key is fresh and used once
MAX_RECIPIENTS = 1024


class EnvelopeError(NodeError):
    """An envelope that cannot be used: not for us, changed, replayed or truncated (one line)."""


class Unreadable(EnvelopeError):
    """An envelope sealed to us whose wrap or ciphertext does not open for us. The sender may have given us
    alone a bad wrap (nobody else can tell), so another recipient may relay the key (`open_with_key`)."""


@dataclass(frozen=True)
class Place:
    """Where an envelope belongs: bound into its encryption, so it opens nowhere else."""

    chain_id: int
    contract: str
    sender: str
    round: int
    kind: str = "update"

    def context(self, recipient: str) -> Context:
        return Context(self.chain_id, self.contract, self.sender, recipient, f"{self.kind}-key", self.round, 0)

    def aad(self, table: bytes) -> bytes:
        head = b"fedchain/envelope/v1|%d|%s|%s|%d|%s|" % (
            self.chain_id,
            self.contract.lower().encode(),
            self.sender.lower().encode(),
            self.round,
            self.kind.encode(),
        )
        return head + hashlib.sha256(table).digest()


@dataclass(frozen=True)
class Opened:
    content: bytes
    inner_hash: bytes  # sha256(blind | content)
    key: bytes = b""  # the content key: what a recipient relays to one whose wrap does not open
    recipients: frozenset[str] = frozenset()  # the envelope's recipients (lowercase addresses)


def sealable(public: bytes) -> bool:
    """Whether a key can be sealed to (a low-order point, as a malicious member may register, cannot)."""
    try:
        seal(b"", public, Context(0, "", "", "", "probe", 0, 0))
    except SealError:
        return False
    return True


def _address(a: str) -> bytes:
    if not is_address(a):
        raise EnvelopeError(f"{a!r} is not an address")
    return to_canonical_address(a)


def seal_envelope(content: bytes, recipients: Mapping[str, bytes], place: Place) -> tuple[bytes, bytes, list[str]]:
    """`content` for `recipients` (address -> X25519 public key): the envelope, its inner hash (to commit to),
    and the recipients left out because their key cannot be sealed to."""
    skipped = sorted(a for a, k in recipients.items() if not sealable(k))
    chosen = sorted((_address(a), a) for a in recipients if a not in skipped)
    if not chosen:
        raise EnvelopeError("no recipient to seal the update to")
    if len(chosen) > MAX_RECIPIENTS:
        raise EnvelopeError(f"{len(chosen)} recipients, more than {MAX_RECIPIENTS}")
    key = os.urandom(KEY)
    table = _COUNT.pack(len(chosen)) + b"".join(
        raw + seal(key, recipients[a], place.context(to_checksum_address(raw))) for raw, a in chosen
    )
    inner = os.urandom(BLIND) + content
    head = table + _derive(key, b"commit")
    ciphertext = ChaCha20Poly1305(_derive(key, b"encrypt")).encrypt(_NONCE, inner, place.aad(head))
    return _MAGIC + head + ciphertext, hashlib.sha256(inner).digest(), skipped


def _derive(key: bytes, use: bytes) -> bytes:
    """A key's commitment or its encryption key. ChaCha20-Poly1305 does not commit to its key: a sender could
    make one ciphertext that opens, under two keys, to two contents. The commitment pins the one key (so every
    reader who opens an envelope reads the same content, and a relayed key is checked before it is used)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedchain/envelope/v2|" + use).derive(key)


def _table(data: bytes, place: Place, required: Iterable[str], max_size: int) -> tuple[str, int, dict[bytes, bytes]]:
    """The envelope's description, where its ciphertext starts and its wraps by address, checked: well formed,
    and a wrap for every `required` recipient (a sender cannot leave a member out unseen)."""
    what = f"the {place.kind} of {place.sender} for round {place.round}"
    if len(data) < len(_MAGIC) + _COUNT.size or not data.startswith(_MAGIC):
        raise EnvelopeError(f"{what}: not a fedchain envelope")
    (n,) = _COUNT.unpack_from(data, len(_MAGIC))
    end = len(_MAGIC) + _COUNT.size + n * _ENTRY
    end += _COMMIT
    if n == 0 or n > MAX_RECIPIENTS or len(data) < end + BLIND + _TAG:
        raise EnvelopeError(f"{what}: {len(data)} bytes for {n} recipients")
    if len(data) - end > max_size + BLIND + _TAG:
        raise EnvelopeError(f"{what}: larger than the {max_size} bytes allowed")
    at = len(_MAGIC) + _COUNT.size
    listed = _listed(data)
    if listed != sorted(set(listed)):
        raise EnvelopeError(f"{what}: its recipients are repeated or out of order")
    wraps = {listed[i]: data[at + i * _ENTRY + 20 : at + (i + 1) * _ENTRY] for i in range(n)}
    missing = sorted(to_checksum_address(_address(a)) for a in required if _address(a) not in wraps)
    if missing:
        raise EnvelopeError(f"{what}: not sealed to {', '.join(missing)}, a member of the round")
    return what, end, wraps


def _decrypt(data: bytes, place: Place, end: int, key: bytes, what: str) -> Opened:
    """Open with `key` once it matches the envelope's commitment (else Unreadable: not the key, as a bad wrap
    or a relayer's lie gives); past that every holder of the key reads the same, or is refused the same."""
    if not hmac.compare_digest(_derive(key, b"commit"), data[end - _COMMIT : end]):
        raise Unreadable(f"{what}: the key we were given is not the one it was sealed under")
    try:
        inner = ChaCha20Poly1305(_derive(key, b"encrypt")).decrypt(
            _NONCE, data[end:], place.aad(data[len(_MAGIC) : end])
        )
    except InvalidTag:
        raise EnvelopeError(f"{what}: does not open (changed, or not for this round and sender)") from None
    listed = frozenset("0x" + a.hex() for a in _listed(data))
    return Opened(inner[BLIND:], hashlib.sha256(inner).digest(), key, listed)


def _listed(data: bytes) -> list[bytes]:
    """The recipients' addresses of a well-formed envelope."""
    (n,) = _COUNT.unpack_from(data, len(_MAGIC))
    at = len(_MAGIC) + _COUNT.size
    return [data[at + i * _ENTRY : at + i * _ENTRY + 20] for i in range(n)]


def open_envelope(
    data: bytes, place: Place, me: str, key: SealKey, required: Iterable[str] = (), max_size: int = 1 << 30
) -> Opened:
    """The content of `data` (from a peer: untrusted) for member `me`, checked: every `required` recipient
    has a wrap (a sender cannot leave a member out unseen), ours opens, the ciphertext opens for this place."""
    what, end, wraps = _table(data, place, required, max_size)
    mine = wraps.get(_address(me))
    if mine is None:
        raise EnvelopeError(f"{what}: not sealed to {to_checksum_address(_address(me))} (not a recipient)")
    try:
        k = key.open(mine, place.context(to_checksum_address(_address(me))), KEY)
    except SealError as exc:
        raise Unreadable(f"{what}: our key does not open ({exc})") from None
    if len(k) != KEY:
        raise Unreadable(f"{what}: a wrapped key of {len(k)} bytes")
    return _decrypt(data, place, end, k, what)


def open_with_key(
    data: bytes, place: Place, content_key: bytes, required: Iterable[str] = (), max_size: int = 1 << 30
) -> Opened:
    """The content of `data` opened with a content key another recipient relayed (checked like
    `open_envelope`, but for the wrap; the caller checks the content against its committed hash)."""
    what, end, _wraps = _table(data, place, required, max_size)
    if len(content_key) != KEY:
        raise EnvelopeError(f"{what}: a relayed key of {len(content_key)} bytes")
    return _decrypt(data, place, end, content_key, what)
