"""Sealed updates' envelopes: what members open, and what everyone else (and every tampering) is refused."""

from __future__ import annotations

import random

import pytest
from eth_account import Account

from node.privacy.envelope import EnvelopeError, Place, open_envelope, seal_envelope, sealable
from node.privacy.seal import SealKey

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
    with pytest.raises(EnvelopeError, match="our key does not open"):  # a member's address, another key
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
    first, *others = sorted(public)
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


def test_a_key_that_cannot_be_sealed_to_is_left_out_not_fatal() -> None:
    keys, public = _members(2)
    bad = Account.create().address
    low_order = (1).to_bytes(32, "little")  # u = 1: a point of small order, no shared secret with it
    assert not sealable(low_order) and all(sealable(k) for k in public.values())
    data, _, skipped = seal_envelope(CONTENT, {**public, bad: low_order}, PLACE)
    assert skipped == [bad]
    required = [m for m, k in {**public, bad: low_order}.items() if sealable(k)]
    a = next(iter(keys))
    assert open_envelope(data, PLACE, a, keys[a], required=required).content == CONTENT
