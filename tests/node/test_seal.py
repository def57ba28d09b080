"""Sealed messages (HPKE): only the recipient opens them, and only in the context they were sealed for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from node.privacy.seal import OVERHEAD, Context, SealError, SealKey, seal

CTX = Context(31337, "0x" + "ab" * 20, "0x" + "01" * 20, "0x" + "02" * 20, "embedding", 3, 7)


def test_the_recipient_opens_what_was_sealed_to_it_and_no_one_else_does() -> None:
    bob, eve = SealKey.generate(), SealKey.generate()
    message = b"an embedding" * 100
    sealed = seal(message, bob.public, CTX)
    assert len(sealed) == len(message) + OVERHEAD and message not in sealed
    assert seal(message, bob.public, CTX) != sealed  # a fresh ephemeral key each time
    assert bob.open(sealed, CTX, max_size=len(message)) == message
    with pytest.raises(SealError, match="does not open"):
        eve.open(sealed, CTX, max_size=len(message))


def test_a_derived_ephemeral_key_makes_the_same_standard_ciphertext_from_the_same_inputs() -> None:
    """`ikm` given: the same bytes each time (whoever knows `ikm` can check a message sealed to someone else),
    opened by `cryptography`'s own HPKE like any other; another `ikm`, recipient or context gives other bytes."""
    bob, eve = SealKey.generate(), SealKey.generate()
    ikm = bytes(range(32))
    sealed = seal(b"a content key", bob.public, CTX, ikm=ikm)
    assert sealed == seal(b"a content key", bob.public, CTX, ikm=ikm)
    assert len(sealed) == len(b"a content key") + OVERHEAD
    assert bob.open(sealed, CTX, max_size=100) == b"a content key"
    others = {
        seal(b"a content key", bob.public, CTX, ikm=bytes(32)),
        seal(b"a content key", eve.public, CTX, ikm=ikm),
        seal(b"a content key", bob.public, dataclasses.replace(CTX, seq=8), ikm=ikm),
    }
    assert sealed not in others and len(others) == 3
    with pytest.raises(SealError, match="does not open"):
        eve.open(sealed, CTX, max_size=100)
    with pytest.raises(SealError, match="cannot seal to"):  # u = 1: no shared secret, derived key or not
        seal(b"k", (1).to_bytes(32, "little"), CTX, ikm=ikm)


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1},
        {"contract": "0x" + "cd" * 20},
        {"sender": "0x" + "03" * 20},
        {"recipient": "0x" + "03" * 20},
        {"kind": "gradient"},
        {"epoch": 4},
        {"seq": 8},
    ],
)
def test_a_message_opens_only_in_its_own_context(change: dict[str, object]) -> None:
    """Replayed from another epoch or place, or redirected: refused, like any malformed message."""
    bob = SealKey.generate()
    sealed = seal(b"gradient", bob.public, CTX)
    with pytest.raises(SealError, match="tampered, misdirected or replayed"):
        bob.open(sealed, dataclasses.replace(CTX, **change), max_size=100)  # type: ignore[arg-type]


def test_tampered_truncated_and_oversized_messages_are_refused() -> None:
    bob = SealKey.generate()
    sealed = seal(b"x" * 64, bob.public, CTX)
    for i in (0, 31, 32, len(sealed) - 1):  # the encapsulated key, the ciphertext, the tag
        flipped = bytearray(sealed)
        flipped[i] ^= 1
        with pytest.raises(SealError, match="does not open"):
            bob.open(bytes(flipped), CTX, max_size=64)
    with pytest.raises(SealError, match="too short"):
        bob.open(sealed[:20], CTX, max_size=64)
    with pytest.raises(SealError, match="more than the"):
        bob.open(sealed, CTX, max_size=63)
    with pytest.raises(SealError, match="not an X25519 public key"):
        seal(b"x", bytes(32), CTX)
    with pytest.raises(SealError, match="cannot seal to"):  # u = 1: a low-order key a member could register
        seal(b"x", b"\x01" + bytes(31), CTX)


def test_a_key_is_kept_encrypted_with_its_password(tmp_path: Path) -> None:
    key = SealKey.generate()
    path = tmp_path / "seal.pem"
    key.save(path, "correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert path.stat().st_mode & 0o077 == 0
    assert SealKey.load(path, "correct horse").public == key.public
    with pytest.raises(SealError, match="wrong password"):
        SealKey.load(path, "battery staple")
    with pytest.raises(SealError, match="no such key file"):
        SealKey.load(tmp_path / "missing.pem", "x")
