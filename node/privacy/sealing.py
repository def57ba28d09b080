"""Sealed horizontal federations: updates and models only members and the spec's auditors can read.

A spec's `[sealing]` table turns it on for every member:

    [sealing]
    auditors = ["0x<64 hex>"]   # X25519 public keys that receive every update too (default: none)

**Keys.** Each member registers an X25519 public key on chain (`setEncryptionKey`,
once); its private key is derived with HKDF from the member's account key (so it
is kept exactly as the keystore is, encrypted with its password), bound to the
chain and the contract. An auditor's key is a password-encrypted PKCS#8 file
(`fedchain audit keygen`); in an envelope's recipient table it goes by a
pseudo-address, the first 20 bytes of sha256 of its public key.

**Updates.** At its reveal a member seals its committed content to every active
member with a registered key and every auditor (`node.privacy.envelope`: one
ChaCha20-Poly1305 ciphertext, its key wrapped by HPKE for each recipient, the
place bound into both; every wrap a function of the key, so each reader who
opens it checks every required recipient's wrap). The sealed payload is a header naming the model the
update was trained on (its round and key, below) and then the content. A
receiver requires a wrap for every committer of the round whose key was
registered before the round's reveals began (`since` on chain) and for every
auditor, so a sender cannot quietly leave a voter out, nor give one a wrap that
does not open: every reader reaches the same verdict on an envelope, and
anything that does not open is a malformed update for all. The commitment and the revealed content hash bind
the plaintext content, as without sealing: duplicate and replay checks work the
same, and a peer who joins later can check them. The cost: anyone who guesses an
update's exact bytes (the zero update, say) can confirm it from the chain.

**Models.** A proposal binds the model's CID, so every honest voter must publish
the same bytes: a model is encrypted deterministically, under K = HKDF(model
bytes, place), with no wraps. A member who computed the model knows K; every
other reader (a member who joined since, an auditor, a member a sender left out)
learns K from the header of an update trained on it, checked by opening the
model and hashing it against the chain.

No cryptography is written here: HKDF, X25519, HPKE and the AEAD are `cryptography`'s (HPKE with a derived
ephemeral key `pyhpke`'s).
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ledger.client import FederationClient
from node.core.codec import content_hash
from node.errors import NodeError
from node.privacy.envelope import (
    MAX_RECIPIENTS,
    WRAP,
    EnvelopeError,
    Place,
    open_envelope,
    seal_envelope,
    sealable,
)
from node.privacy.seal import SealKey

__all__ = ["SEAL_SLACK", "Sealer", "SealingSpec", "auditor_address", "member_seal_key", "model_key", "seal_model"]

# The round of the model an update was trained on and that model's key, then the same for the model finalized
# before it: a member who joined since needs both to re-run the round (the second is its copy check's).
_HEAD = struct.Struct(">Q32sQ32s")
_MODEL_MAGIC = b"FCMOD1\x00\x00"
_NONCE = bytes(12)  # each model key encrypts one plaintext only (it is derived from it)
# What sealing adds to a content at most: envelope magic, count, a wrap per recipient, commitment, blind, tag,
# header.
SEAL_SLACK = 8 + 2 + MAX_RECIPIENTS * (20 + WRAP) + 32 + 32 + 16 + _HEAD.size
ZERO_KEY = bytes(32)
KEEP_KEYS = 8  # rounds of model keys a long-running reader keeps in memory (older ones are never asked for)


@dataclass(frozen=True)
class SealingSpec:
    """The spec's `[sealing]` table."""

    auditors: tuple[bytes, ...] = ()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SealingSpec | None:
        """The spec's `[sealing]`, checked; None when the spec has none (updates in the clear)."""
        table = spec.get("sealing")
        if table is None:
            return None
        if not isinstance(table, Mapping):
            raise NodeError("spec [sealing]: expected a table")
        unknown = sorted(set(table) - {"auditors"})
        if unknown:
            raise NodeError(f"spec [sealing]: unknown key {unknown[0]!r}")
        raw = table.get("auditors", [])
        if not isinstance(raw, list):
            raise NodeError("spec [sealing]: auditors must be a list of X25519 public keys (0x + 64 hex)")
        keys = []
        for a in raw:
            try:
                key = bytes.fromhex(str(a).removeprefix("0x"))
            except ValueError:
                key = b""
            if len(key) != 32 or not sealable(key):
                raise NodeError(f"spec [sealing]: auditor key {a!r} is not an X25519 public key (0x + 64 hex)")
            keys.append(key)
        if len(set(keys)) != len(keys):
            raise NodeError("spec [sealing]: an auditor key is listed twice")
        return cls(tuple(keys))

    @property
    def recipients(self) -> dict[str, bytes]:
        return {auditor_address(k): k for k in self.auditors}


def auditor_address(public: bytes) -> str:
    """An auditor's name in an envelope's recipient table (it has no account)."""
    return to_checksum_address(hashlib.sha256(b"fedchain/auditor/v1|" + public).digest()[:20])


def member_seal_key(account_key: bytes, chain_id: int, contract: str) -> SealKey:
    """A member's sealing key for one federation, derived from its account key (nothing new to keep)."""
    info = b"fedchain/seal-key/v1|%d|%s" % (chain_id, contract.lower().encode())
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(account_key)
    return SealKey(X25519PrivateKey.from_private_bytes(secret))


def _model_info(chain_id: int, contract: str, r: int) -> bytes:
    return b"fedchain/model/v1|%d|%s|%d" % (chain_id, contract.lower().encode(), r)


def model_key(model: bytes, chain_id: int, contract: str, r: int) -> bytes:
    """Round `r`'s model key: anyone holding the model's bytes derives it, nobody else can."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_model_info(chain_id, contract, r)).derive(model)


def seal_model(model: bytes, chain_id: int, contract: str, r: int) -> tuple[bytes, bytes]:
    """Round `r`'s model sealed (the same bytes from every member who computed it) and its key."""
    key = model_key(model, chain_id, contract, r)
    info = _model_info(chain_id, contract, r)
    return _MODEL_MAGIC + ChaCha20Poly1305(key).encrypt(_NONCE, model, info), key


def open_model(data: bytes, key: bytes, chain_id: int, contract: str, r: int) -> bytes:
    if not data.startswith(_MODEL_MAGIC):
        raise EnvelopeError(f"round {r}'s model is not a sealed fedchain model")
    try:
        return ChaCha20Poly1305(key).decrypt(_NONCE, data[len(_MODEL_MAGIC) :], _model_info(chain_id, contract, r))
    except InvalidTag:
        raise EnvelopeError(f"round {r}'s model does not open with this key") from None


class Sealer:
    """One reader's sealing: a member's (its address and derived key) or an auditor's (`me` is its pseudo-address).

    `known` holds the model keys this reader has checked, by round; `offered` the keys update headers
    named, still to be tried. Openers run in fetch threads: both are guarded by a lock.
    """

    def __init__(
        self,
        fed: FederationClient,
        me: str,
        key: SealKey,
        spec: SealingSpec,
        known: Mapping[int, bytes] | None = None,
        origin: int = 0,
    ) -> None:
        self.fed, self.me, self.key, self.spec = fed, me, key, spec
        self.chain_id, self.contract = fed.chain.chain_id, fed.address
        self.origin = origin  # the deployment's block: a round's committers are read from there, for everyone alike
        self.known: dict[int, bytes] = dict(known or {})  # keys checked against a finalized model's hash
        self._mine: dict[int, bytes] = {}  # keys of the models this reader proposed (not checked: it may lose)
        self._offered: dict[int, set[bytes]] = {}
        self._required: dict[int, dict[str, bytes]] = {}  # by round: asked for once its reveals began
        # The members' keys read while sealing an update of a round (what `required` needs of it, read once).
        self._keys_in: dict[int, dict[str, tuple[bytes, int, bool]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_member(
        cls,
        fed: FederationClient,
        account: LocalAccount,
        spec: SealingSpec,
        known: Mapping[str, str] | None = None,
        origin: int = 0,
    ) -> Sealer:
        """A member's sealer: its key derived from its account key; `known`: model keys kept in its state file."""
        key = member_seal_key(bytes(account.key), fed.chain.chain_id, fed.address)
        keys = {int(r): bytes.fromhex(k) for r, k in (known or {}).items()}
        return cls(fed, str(account.address), key, spec, keys, origin)

    def place(self, sender: str, r: int) -> Place:
        return Place(self.chain_id, self.contract, sender, r)

    # -- updates --------------------------------------------------------------

    def recipients(self, r: int | None = None) -> dict[str, bytes]:
        """Whom an update is sealed to now: every active member with a registered key, and the auditors. With
        `r` (round `r` is past its commit phase), the keys read are kept for `required(r)`."""
        keys = self.fed.encryption_keys()
        if r is not None:
            self._keys_in[r] = keys
        return {**{a: k for a, (k, _since, active) in keys.items() if active}, **self.spec.recipients}

    def required(self, r: int) -> dict[str, bytes]:
        """Whom every round-`r` update must be sealed to, with their keys: its committers whose (usable) key
        was registered before its reveals began, and the auditors. Fixed by the chain's history once the round's reveals
        begin (committers are read from the deployment's block; a key is never replaced, and a committer
        who left since is still listed), so every reader asks the same of every update, whenever it fetches it."""
        if r in self._required:
            return self._required[r]
        # Keys read after round r's reveals began hold every key with since <= r.
        keys = self._keys_in.pop(r, None) or self.fed.encryption_keys()
        self._keys_in = {k: v for k, v in self._keys_in.items() if k > r}
        committers = self.fed.committers(r, self.origin)
        voters = {a: keys[a][0] for a in committers if a in keys and keys[a][1] <= r and sealable(keys[a][0])}
        self._required = {k: v for k, v in self._required.items() if k >= r - 2}
        self._required[r] = {**voters, **self.spec.recipients}
        return self._required[r]

    def seal_update(self, content: bytes, r: int, base_round: int, before: int = 0) -> bytes:
        """`content` (round `r`'s, committed) sealed to `recipients()`, its header naming the model it was
        trained on (round `base_round`) and the one finalized before that (round `before`), with their keys
        if this member holds them."""
        head = _HEAD.pack(base_round, self._key_of(base_round), before, self._key_of(before))
        data, _inner, _skipped = seal_envelope(head + content, self.recipients(r), self.place(self.me, r))
        return data

    def _key_of(self, r: int) -> bytes:
        """The key this reader would name for round `r`'s model: checked, else of its own proposal."""
        return self.known.get(r) or self._mine.get(r) or ZERO_KEY

    def update_opener(self, sender: str, r: int, required: Mapping[str, bytes]) -> Callable[[bytes], bytes]:
        """Opens `sender`'s round-`r` envelope to its content (EnvelopeError if it cannot be used: the same for
        every reader), and keeps the model keys its header offers."""

        def open_(data: bytes) -> bytes:
            payload = open_envelope(data, self.place(sender, r), self.me, self.key, required).content
            if len(payload) < _HEAD.size:
                raise EnvelopeError(f"the update of {sender} for round {r}: no header")
            base, key, before, key_before = _HEAD.unpack_from(payload)
            with self._lock:
                for k, v in ((base, key), (before, key_before)):
                    if 0 < k < r and v != ZERO_KEY:
                        self._offered.setdefault(int(k), set()).add(bytes(v))
                self._forget(r)
            return payload[_HEAD.size :]

        return open_

    # -- models ---------------------------------------------------------------

    def seal_model(self, model: bytes, r: int) -> bytes:
        """Round `r`'s model as this reader proposes it, sealed (the same bytes from every member who computed
        it). Its key is kept as this reader's own: named in headers and tried, never trusted, until a finalized
        model opens with it (its proposal may lose)."""
        data, key = seal_model(model, self.chain_id, self.contract, r)
        with self._lock:
            self._mine[r] = key
            self._forget(r)
        return data

    def remember(self, r: int, model: bytes) -> bytes:
        """Keep (and return) round `r`'s model key, from the model's bytes: the finalized model this reader holds."""
        key = model_key(model, self.chain_id, self.contract, r)
        with self._lock:
            self.known[r] = key
            self._forget(r)
        return key

    def _forget(self, r: int) -> None:
        """Drop the keys of models more than KEEP_KEYS rounds before `r` (under the lock)."""
        for table in (self.known, self._mine, self._offered):
            for old in [k for k in table if k < r - KEEP_KEYS]:
                del table[old]

    def knows(self, r: int) -> bool:
        """Whether this reader holds round `r`'s checked model key."""
        return r in self.known

    def model_opener(self, r: int, expected: bytes) -> Callable[[bytes], bytes]:
        """Opens round `r`'s sealed model with a key this reader holds or was offered (the first that gives a
        model hashing to `expected` is kept)."""

        def open_(data: bytes) -> bytes:
            with self._lock:
                offered = sorted(self._offered.get(r, ()))
                candidates = [k for k in (self.known.get(r), self._mine.get(r), *offered) if k is not None]
            for key in candidates:
                try:
                    model = open_model(data, key, self.chain_id, self.contract, r)
                except EnvelopeError:
                    continue
                if content_hash(model) == expected:
                    with self._lock:
                        self.known[r] = key
                    return model
            raise EnvelopeError(
                f"round {r}'s model is sealed and no key this reader holds opens it (a member learns it from "
                "the updates trained on it)"
            )

        return open_
