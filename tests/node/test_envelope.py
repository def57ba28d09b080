"""Sealed updates' envelopes: what members open, and what everyone else (and every tampering) is refused; a
wrap that one member cannot open is refused by every reader alike."""

from __future__ import annotations

import os
import random

import pytest
from eth_account import Account

from node.privacy import envelope as env
from node.privacy.envelope import (
    EnvelopeError,
    Place,
    open_envelope,
    seal_envelope,
    sealable,
)
from node.privacy.seal import SealKey, seal

CONTENT = b"an update's canonical bytes " * 40


def _members(n: int) -> tuple[dict[str, SealKey], dict[str, bytes]]:
    keys = {Account.create().address: SealKey.generate() for _ in range(n)}
    return keys, {a: k.public for a, k in keys.items()}


PLACE = Place(31337, "0x" + "ab" * 20, "0x" + "cd" * 20, 7)


def test_every_member_opens_the_same_content_and_inner_hash() -> None:
    keys, public = _members(4)
    data, inner, skipped = seal_envelope(CONTENT, public, PLACE)
    assert not skipped and CONTENT not in data
    opened = [open_envelope(data, PLACE, a, k, required=public) for a, k in keys.items()]
    assert {o.content for o in opened} == {CONTENT} and {o.inner_hash for o in opened} == {inner}
    again, inner_again, _ = seal_envelope(CONTENT, public, PLACE)
    assert again != data and inner_again != inner  # a fresh key and blind each time: nothing to compare


def test_outsiders_and_other_places_are_refused() -> None:
    keys, public = _members(3)
    data, _, _ = seal_envelope(CONTENT, public, PLACE)
    a, k = next(iter(keys.items()))
    outsider = Account.create().address
    with pytest.raises(EnvelopeError, match="not a recipient"):
        open_envelope(data, PLACE, outsider, SealKey.generate())
    with pytest.raises(EnvelopeError, match="our wrap does not open"):  # a member's address, another key
        open_envelope(data, PLACE, a, SealKey.generate())
    for other in (
        Place(PLACE.chain_id, PLACE.contract, PLACE.sender, PLACE.round + 1),  # replayed in another round
        Place(PLACE.chain_id, PLACE.contract, outsider, PLACE.round),  # claimed by another sender
        Place(1, PLACE.contract, PLACE.sender, PLACE.round),  # on another chain
        Place(PLACE.chain_id, PLACE.contract, PLACE.sender, PLACE.round, "model"),
    ):
        with pytest.raises(EnvelopeError):
            open_envelope(data, other, a, k)


def test_a_sender_cannot_leave_a_member_out_unseen_or_swap_wraps() -> None:
    keys, public = _members(3)
    first, *others = sorted(public, key=env._address)  # the envelope's order (address bytes)
    data, _, _ = seal_envelope(CONTENT, {a: public[a] for a in others}, PLACE)
    with pytest.raises(EnvelopeError, match=f"not sealed to {first}"):
        open_envelope(data, PLACE, others[0], keys[others[0]], required=public)
    full, _, _ = seal_envelope(CONTENT, public, PLACE)
    head = 8 + 2
    entry = 20 + 80
    swapped = bytearray(full)  # the first two recipients' wraps exchanged
    swapped[head + 20 : head + entry], swapped[head + entry + 20 : head + 2 * entry] = (
        full[head + entry + 20 : head + 2 * entry],
        full[head + 20 : head + entry],
    )
    with pytest.raises(EnvelopeError):
        open_envelope(bytes(swapped), PLACE, first, keys[first])


def test_every_changed_or_truncated_byte_is_refused_in_one_error() -> None:
    keys, public = _members(2)
    data, _, _ = seal_envelope(CONTENT, public, PLACE)
    a, k = next(iter(keys.items()))
    rng = random.Random(5)
    for i in [*range(0, 12), *rng.sample(range(12, len(data)), 60)]:
        changed = bytearray(data)
        changed[i] ^= 1 << rng.randrange(8)
        with pytest.raises(EnvelopeError):
            open_envelope(bytes(changed), PLACE, a, k)
    for cut in [0, 5, 9, 10, 50, 200, len(data) - 1]:
        with pytest.raises(EnvelopeError):
            open_envelope(data[:cut], PLACE, a, k)
    with pytest.raises(EnvelopeError, match="larger than"):
        open_envelope(data, PLACE, a, k, max_size=100)
    with pytest.raises(EnvelopeError, match="another fedchain release"):  # the relay's format: refused clearly
        open_envelope(b"FCENV2\x00\x00" + data[8:], PLACE, a, k)


def test_a_key_that_cannot_be_sealed_to_is_left_out_not_fatal() -> None:
    keys, public = _members(2)
    bad = Account.create().address
    low_order = (1).to_bytes(32, "little")  # u = 1: a point of small order, no shared secret with it
    assert not sealable(low_order) and all(sealable(k) for k in public.values())
    data, _, skipped = seal_envelope(CONTENT, {**public, bad: low_order}, PLACE)
    assert skipped == [bad]
    required = {m: k for m, k in {**public, bad: low_order}.items() if sealable(k)}
    a = next(iter(keys))
    assert open_envelope(data, PLACE, a, keys[a], required=required).content == CONTENT


# -- wraps: a function of the key, so every reader checks every required recipient's ----------------------

_HONEST_WRAP = env._wrap


def _sealed_with(public: dict[str, bytes], make: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> bytes:
    """An envelope whose wraps for the members in `make` are made by `make[member](key, public, place, raw)`
    (a sender that cheats those members); the others' as an honest sender makes them."""
    honest = _HONEST_WRAP

    def wrap(key: bytes, pub: bytes, place: Place, raw: bytes) -> bytes:
        for member, cheat in make.items():
            if env._address(member) == raw:
                return cheat(key, pub, place, raw)  # type: ignore[operator, no-any-return]
        return honest(key, pub, place, raw)

    with monkeypatch.context() as m:
        m.setattr(env, "_wrap", wrap)
        return seal_envelope(CONTENT, public, PLACE)[0]


def test_a_sealed_envelopes_wraps_are_made_again_by_every_reader_from_its_key() -> None:
    keys, public = _members(4)
    data, _, _ = seal_envelope(CONTENT, public, PLACE)
    for a, k in keys.items():  # each reader makes every wrap again and finds them all as sealed
        assert open_envelope(data, PLACE, a, k, required=public).content == CONTENT


@pytest.mark.parametrize(
    "cheat",
    [
        lambda key, pub, place, raw: _HONEST_WRAP(key, SealKey.generate().public, place, raw),  # for another key
        lambda key, pub, place, raw: _HONEST_WRAP(os.urandom(32), pub, place, raw),  # another content key
        lambda key, pub, place, raw: os.urandom(80),  # noise
    ],
    ids=["another-key", "another-content-key", "noise"],
)
def test_a_wrap_one_member_cannot_open_is_refused_by_every_reader(
    cheat: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender gives one member a wrap that does not open to the envelope's key: that member cannot read
    it, and every member who can sees that wrap is not the one the key makes, so all refuse the update (the
    victim is not the only one left out: the vote cannot split on it). A reader who does not require the
    victim (it did not take part in the round) reads the update."""
    keys, public = _members(4)
    victim = sorted(public)[1]
    data = _sealed_with(public, {victim: cheat}, monkeypatch)
    for a, k in keys.items():
        with pytest.raises(EnvelopeError, match="our wrap|not sealed under" if a == victim else f"for {victim}"):
            open_envelope(data, PLACE, a, k, required=public)
    reader = next(a for a in keys if a != victim)
    others = {a: p for a, p in public.items() if a != victim}
    assert open_envelope(data, PLACE, reader, keys[reader], required=others).content == CONTENT


def test_a_wrap_that_opens_but_was_not_made_from_the_key_is_refused_by_every_reader_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A standard HPKE wrap of the right key with a random ephemeral key: its recipient could open it, but no
    other reader can tell it from a bad one, so everyone (the recipient too) refuses it alike."""
    keys, public = _members(3)
    victim = sorted(public)[0]

    def random_ephemeral(key: bytes, pub: bytes, place: Place, raw: bytes) -> bytes:
        return seal(key, pub, place.context(victim))

    data = _sealed_with(public, {victim: random_ephemeral}, monkeypatch)
    assert open_envelope(data, PLACE, victim, keys[victim]).content == CONTENT  # it does open for the victim
    for a, k in keys.items():
        with pytest.raises(EnvelopeError, match=f"for {victim}"):
            open_envelope(data, PLACE, a, k, required=public)


# -- a ciphertext made to open under two keys ------------------------------------------------------------
# ChaCha20-Poly1305 does not commit to its key: a sender can solve for one ciphertext block so that the tag
# verifies under two keys (Poly1305 is linear in the ciphertext), giving two readers two contents. This builds
# one (test code: an attack, not a primitive) and checks the envelope's key commitment refuses the second key.

_P = (1 << 130) - 5


def _keystream(key: bytes, counter: int, n: int) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    nonce = counter.to_bytes(4, "little") + bytes(12)
    return Cipher(algorithms.ChaCha20(key, nonce), None).encryptor().update(bytes(n))


def _poly_key(key: bytes) -> tuple[int, int]:
    b = _keystream(key, 0, 32)
    return int.from_bytes(b[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF, int.from_bytes(b[16:], "little")


def _blocks(aad: bytes, ct: bytes) -> list[int]:
    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 16)

    m = pad(aad) + pad(ct) + len(aad).to_bytes(8, "little") + len(ct).to_bytes(8, "little")
    return [int.from_bytes(m[i : i + 16], "little") + (1 << 128) for i in range(0, len(m), 16)]


def _poly(blocks: list[int], r: int) -> int:
    acc = 0
    for b in blocks:
        acc = (acc + b) * r % _P
    return acc


def _two_key_ciphertext(k1: bytes, k2: bytes, plaintext: bytes, aad: bytes) -> bytes | None:
    """A ciphertext (with tag) that ChaCha20-Poly1305 opens under both k1 and k2, or None (retry other keys)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    ct = bytearray(x ^ y for x, y in zip(plaintext, _keystream(k1, 1, len(plaintext)), strict=True))
    (r1, s1), (r2, s2) = _poly_key(k1), _poly_key(k2)
    at = -(-len(aad) // 16)  # the first ciphertext block
    blocks = _blocks(aad, bytes(ct))
    n = len(blocks)
    blocks[at] = 0
    x = (
        (_poly(blocks, r2) - _poly(blocks, r1) + (s2 - s1) % (1 << 128))
        * pow(pow(r1, n - at, _P) - pow(r2, n - at, _P), -1, _P)
        % _P
    )
    if not (1 << 128) <= x < (1 << 129):
        return None
    ct[:16] = (x - (1 << 128)).to_bytes(16, "little")
    final = _blocks(aad, bytes(ct))
    t1, t2 = (_poly(final, r1) + s1) % (1 << 128), (_poly(final, r2) + s2) % (1 << 128)
    if t1 != t2:
        return None
    data = bytes(ct) + t1.to_bytes(16, "little")
    for k in (k1, k2):
        ChaCha20Poly1305(k).decrypt(bytes(12), data, aad)  # both open: the attack works on the bare AEAD
    return data


def test_a_ciphertext_made_to_open_under_two_keys_opens_only_under_the_committed_one() -> None:
    keys, public = _members(2)
    # the envelope's order: address bytes (checksummed strings sort 0xB... before 0xa...)
    (a, ka), (b, kb) = sorted(keys.items(), key=lambda item: env._address(item[0]))
    for _ in range(1000):
        k1, k2 = os.urandom(32), os.urandom(32)
        table = env._COUNT.pack(2) + b"".join(
            env._address(m) + env._wrap(k, public[m], PLACE, env._address(m)) for m, k in ((a, k1), (b, k2))
        )
        head = table + env._derive(k1, b"commit")
        inner = os.urandom(32) + CONTENT
        crafted = _two_key_ciphertext(env._derive(k1, b"encrypt"), env._derive(k2, b"encrypt"), inner, PLACE.aad(head))
        if crafted is not None:
            break
    else:
        pytest.fail("no two-key ciphertext found in 1000 tries")
    data = env._MAGIC + head + crafted
    assert open_envelope(data, PLACE, a, ka).content == CONTENT  # the committed key's holder reads it
    with pytest.raises(EnvelopeError, match="not sealed under"):  # the other key is refused
        open_envelope(data, PLACE, b, kb)
    with pytest.raises(EnvelopeError, match=f"for {b}"):  # and b's wrap is not k1's: a refuses it too
        open_envelope(data, PLACE, a, ka, required=public)
