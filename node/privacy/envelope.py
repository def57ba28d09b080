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
dropped, or the envelope replayed elsewhere makes it refuse to open.

**Every reader who opens an envelope checks every required wrap.** A wrap's
HPKE ephemeral key is derived from K and the wrap's context, so a wrap is a
function of K, the recipient's key and the place: whoever holds K makes each
required recipient's wrap again and compares the bytes. A sender cannot give
one member a wrap that does not open (or opens to another key) without every
member who opened the envelope seeing it: those who can open it refuse it for
the bad wrap, the one who cannot refuses it because it cannot, and every
reader reaches the same verdict on the same bytes. Nobody else learns
anything from the derivation: the ephemeral keys are as secret as K.

The plaintext is a fresh 32-byte blind then the content. Its sha256 (`inner
hash`) is returned for a protocol that would commit to it, and the blind keeps
that hash from confirming a guessed update. Sealed federations commit to the
content's own hash instead (`node/privacy/sealing.py` says why). Everything
that cannot be used raises `EnvelopeError` (one line): a reader treats it as a
malformed update, never a crash. No cryptography is written here: AEAD, HKDF
and X25519 are `cryptography`'s, HPKE `cryptography`'s and `pyhpke`'s.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
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
    "forget_wraps",
    "open_envelope",
    "seal_envelope",
    "sealable",
]

_MAGIC = b"FCENV3\x00\x00"
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
        head = b"fedchain/envelope/v3|%d|%s|%s|%d|%s|" % (
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


def sealable(public: bytes) -> bool:
    """Whether a key can be sealed to (a low-order point, as a malicious member may register, cannot), tried
    the way wraps are made."""
    try:
        seal(b"", public, Context(0, "", "", "", "probe", 0, 0), ikm=bytes(32))
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
    key = os.urandom(KEY)
    entries, skipped = [], []
    for raw, a in sorted((_address(a), a) for a in recipients):
        try:
            entries.append(raw + _wrap(key, recipients[a], place, raw))
        except SealError:
            skipped.append(a)
    if not entries:
        raise EnvelopeError("no recipient to seal the update to")
    if len(entries) > MAX_RECIPIENTS:
        raise EnvelopeError(f"{len(entries)} recipients, more than {MAX_RECIPIENTS}")
    table = _COUNT.pack(len(entries)) + b"".join(entries)
    inner = os.urandom(BLIND) + content
    head = table + _derive(key, b"commit")
    ciphertext = ChaCha20Poly1305(_derive(key, b"encrypt")).encrypt(_NONCE, inner, place.aad(head))
    return _MAGIC + head + ciphertext, hashlib.sha256(inner).digest(), skipped


@functools.lru_cache(maxsize=4096)
def _wrap(key: bytes, public: bytes, place: Place, recipient: bytes) -> bytes:
    """K sealed to `recipient`'s key `public`: its ephemeral key derived from K and the wrap's context, so
    whoever holds K makes the same bytes (SealError if `public` cannot be sealed to). Kept for the process's
    other readers: the demo's companies share one process, and each wrap is then made once, not once a reader
    (a peer's own process holds the same keys anyway)."""
    ctx = place.context(to_checksum_address(recipient))
    return seal(key, public, ctx, ikm=_derive(key, b"wrap|" + public + b"|" + ctx.info()))


def forget_wraps() -> None:
    """Drop the wraps this process made (to measure a reader that made none before)."""
    _wrap.cache_clear()


def _derive(key: bytes, use: bytes) -> bytes:
    """A key's commitment, its encryption key or a wrap's ephemeral key material. ChaCha20-Poly1305 does not
    commit to its key: a sender could make one ciphertext that opens, under two keys, to two contents. The
    commitment pins the one key, so every reader who opens an envelope reads the same content."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fedchain/envelope/v3|" + use).derive(key)


def _table(
    data: bytes, place: Place, required: Mapping[str, bytes], max_size: int
) -> tuple[str, int, dict[bytes, bytes]]:
    """The envelope's description, where its ciphertext starts and its wraps by address, checked: well formed,
    and a wrap for every `required` recipient (a sender cannot leave a member out unseen)."""
    what = f"the {place.kind} of {place.sender} for round {place.round}"
    if data.startswith(_MAGIC[:5]) and not data.startswith(_MAGIC):
        raise EnvelopeError(f"{what}: an envelope of another fedchain release (every member must run the same)")
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


def _decrypt(
    data: bytes,
    place: Place,
    end: int,
    key: bytes,
    what: str,
    wraps: Mapping[bytes, bytes],
    required: Mapping[str, bytes],
) -> Opened:
    """Open with `key` once it matches the envelope's commitment and makes every `required` recipient's wrap
    as the envelope has it: past that, every reader who opens it reads the same content, or is refused alike."""
    if not hmac.compare_digest(_derive(key, b"commit"), data[end - _COMMIT : end]):
        raise EnvelopeError(f"{what}: our wrap opens to a key it was not sealed under (its sender cheats)")
    for address, public in required.items():
        raw = _address(address)
        try:
            expected = _wrap(key, public, place, raw)
        except SealError:
            expected = b""
        if not hmac.compare_digest(expected, wraps[raw]):
            raise EnvelopeError(
                f"{what}: its key is not wrapped for {to_checksum_address(raw)} as it must be (a wrap that "
                "member may not open: every reader refuses it)"
            )
    try:
        inner = ChaCha20Poly1305(_derive(key, b"encrypt")).decrypt(
            _NONCE, data[end:], place.aad(data[len(_MAGIC) : end])
        )
    except InvalidTag:
        raise EnvelopeError(f"{what}: does not open (changed, or not for this round and sender)") from None
    return Opened(inner[BLIND:], hashlib.sha256(inner).digest())


def _listed(data: bytes) -> list[bytes]:
    """The recipients' addresses of a well-formed envelope."""
    (n,) = _COUNT.unpack_from(data, len(_MAGIC))
    at = len(_MAGIC) + _COUNT.size
    return [data[at + i * _ENTRY : at + i * _ENTRY + 20] for i in range(n)]


def open_envelope(
    data: bytes,
    place: Place,
    me: str,
    key: SealKey,
    required: Mapping[str, bytes] | None = None,
    max_size: int = 1 << 30,
) -> Opened:
    """The content of `data` (from a peer: untrusted) for recipient `me`, checked: every `required` recipient
    (address -> its registered public key) has a wrap, and the one K makes (a sender cannot leave a member
    out, nor give it a wrap it cannot open, unseen); ours opens; the ciphertext opens for this place."""
    required = required or {}
    what, end, wraps = _table(data, place, required, max_size)
    mine = wraps.get(_address(me))
    if mine is None:
        raise EnvelopeError(f"{what}: not sealed to {to_checksum_address(_address(me))} (not a recipient)")
    try:
        k = key.open(mine, place.context(to_checksum_address(_address(me))), KEY)
    except SealError as exc:
        raise EnvelopeError(f"{what}: our wrap does not open ({exc}); its sender cheats") from None
    if len(k) != KEY:
        raise EnvelopeError(f"{what}: a wrapped key of {len(k)} bytes")
    return _decrypt(data, place, end, k, what, wraps, required)
