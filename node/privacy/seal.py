"""Messages only their recipient can read: HPKE (RFC 9180), from `cryptography`.

Base mode with X25519, HKDF-SHA256 and ChaCha20-Poly1305: a message is sealed
to the recipient's X25519 public key (registered on chain), so an outsider who
fetches it from IPFS learns its size and nothing else. HPKE's `info` binds the
context (`Context`): chain, contract, sender, recipient, the message's kind,
epoch and sequence number. A message replayed from another epoch, sent to
someone else, or changed in one bit does not open, and is refused as malformed
(`SealError`): it never reaches a model. The sender is authenticated by the
chain, not by HPKE: the digest of the sealed bytes is committed from the
sender's account (a logged message or its epoch's Merkle root).

`seal(..., ikm=...)` seals deterministically: the ephemeral key is derived
from `ikm` (RFC 9180's DeriveKeyPair, `pyhpke`), so whoever knows `ikm` can
make the same bytes again and check a message sealed to someone else; the
output is the same standard HPKE ciphertext, opened the same way.

Private keys are kept as PKCS#8 encrypted with the member's password
(`save` / `load`), like its account keystore. No cryptography is written here:
HPKE is `cryptography`'s, or `pyhpke`'s (over `cryptography`) where the
ephemeral key is derived.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, PyHPKEError

from node.errors import NodeError

__all__ = ["OVERHEAD", "Context", "SealError", "SealKey", "seal"]

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_DERIVED = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305)  # the same
OVERHEAD = 32 + 16  # the encapsulated key and the AEAD tag


class SealError(NodeError):
    """A sealed message, key or key file that cannot be used (one line)."""


@dataclass(frozen=True)
class Context:
    """Where a message belongs: bound into its encryption, so it opens nowhere else."""

    chain_id: int
    contract: str
    sender: str
    recipient: str
    kind: str
    epoch: int
    seq: int

    def info(self) -> bytes:
        return b"fedchain/seal/v1|%d|%s|%s|%s|%s|%d|%d" % (
            self.chain_id,
            self.contract.lower().encode(),
            self.sender.lower().encode(),
            self.recipient.lower().encode(),
            self.kind.encode(),
            self.epoch,
            self.seq,
        )

    def what(self) -> str:
        return f"{self.kind} {self.epoch}.{self.seq} from {self.sender}"


def _public(raw: bytes) -> X25519PublicKey:
    if len(raw) != 32 or not any(raw):
        raise SealError(f"not an X25519 public key ({len(raw)} bytes)")
    return X25519PublicKey.from_public_bytes(raw)


def seal(plaintext: bytes, recipient: bytes, ctx: Context, ikm: bytes | None = None) -> bytes:
    """`plaintext` sealed to the X25519 public key `recipient` (raw 32 bytes) for `ctx`; with `ikm` (32 secret
    bytes or more) its ephemeral key is derived from it, so the same inputs give the same bytes. A key no
    secret can be shared with (a low-order point, as a malicious member may register) is a SealError."""
    try:
        if ikm is None:
            return SUITE.encrypt(plaintext, _public(recipient), info=ctx.info())
        enc, sender = _DERIVED.create_sender_context(
            _DERIVED.kem.deserialize_public_key(bytes(_public(recipient).public_bytes_raw())),
            ctx.info(),
            eks=_DERIVED.kem.derive_key_pair(ikm),
        )
        return enc + sender.seal(plaintext)
    except (ValueError, PyHPKEError) as exc:  # no shared secret with that key (`cryptography`'s, or pyhpke's)
        raise SealError(f"cannot seal to {ctx.recipient}'s registered key: {exc}") from None


class SealKey:
    """A member's X25519 key pair for sealed messages."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> SealKey:
        return cls(X25519PrivateKey.generate())

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key (what is registered on chain)."""
        return self._private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def open(self, data: bytes, ctx: Context, max_size: int) -> bytes:
        """The plaintext of `data` (from a peer: untrusted), at most `max_size` bytes, or SealError."""
        if len(data) > max_size + OVERHEAD:
            raise SealError(f"{ctx.what()}: {len(data)} bytes, more than the {max_size + OVERHEAD} expected")
        if len(data) < OVERHEAD:
            raise SealError(f"{ctx.what()}: {len(data)} bytes, too short to be sealed")
        try:
            return SUITE.decrypt(data, self._private, info=ctx.info())
        except (InvalidTag, ValueError):
            raise SealError(
                f"{ctx.what()} does not open: not sealed to us for this task, epoch and place "
                "(tampered, misdirected or replayed)"
            ) from None

    def save(self, path: Path, password: str) -> None:
        """Write the private key as PKCS#8 PEM encrypted with `password` (owner-only permissions)."""
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)

    @classmethod
    def load(cls, path: Path, password: str) -> SealKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password.encode())
        except FileNotFoundError:
            raise SealError(f"{path}: no such key file") from None
        except (ValueError, TypeError):
            raise SealError(f"{path}: wrong password, or not an encrypted private key") from None
        if not isinstance(key, X25519PrivateKey):
            raise SealError(f"{path}: not an X25519 key")
        return cls(key)
