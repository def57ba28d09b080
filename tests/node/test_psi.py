"""ECDH-PSI and row alignment (node/vertical/psi.py): the right rows, and nothing else learned.

A party's whole inbox is inspected: it holds group points and random sample ids only, none of
them an id, a hash of an id or an id hashed to the group, and its size is exactly what the
protocol says (the other side's set size is the one thing leaked)."""

from __future__ import annotations

import hashlib
import random

import pytest

from node.vertical.psi import (
    POINT,
    SAMPLE_ID,
    Alignment,
    PsiError,
    PsiParty,
    align_in_memory,
    decode_points,
    encode_points,
    hash_to_group,
    task_tag,
)

TAG = task_tag(31337, "0x" + "ab" * 20, 1)
HEADER = 12


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def three_parties(seed: int = 0) -> tuple[list[str], dict[str, list[str]], set[str]]:
    """An owner and two parties over a pool of customers, each holding a random part of it."""
    rng = random.Random(seed)
    pool = ids("cust-", 400)
    owner = rng.sample(pool, 300)
    parties = {"hotel": rng.sample(pool, 250), "coffee": rng.sample(pool, 200)}
    common = set(owner) & set(parties["hotel"]) & set(parties["coffee"])
    return owner, parties, common


def test_every_party_gets_the_common_customers_under_the_same_random_sample_ids() -> None:
    owner, parties, common = three_parties()
    aligned, _ = align_in_memory(owner, parties, TAG)
    assert len(aligned["owner"].rows) == len(common) > 50
    for name, their_ids in parties.items():
        rows = aligned[name].rows
        assert rows.keys() == aligned["owner"].rows.keys()
        for sample, owner_row in aligned["owner"].rows.items():
            assert their_ids[rows[sample]] == owner[owner_row]  # the same customer
    assert {owner[r] for r in aligned["owner"].rows.values()} == common
    assert all(len(s) == SAMPLE_ID for s in aligned["owner"].rows)


def test_a_party_receives_points_and_sample_ids_only_and_exactly_as_many_as_the_protocol_says() -> None:
    owner, parties, common = three_parties(1)
    _, inbox = align_in_memory(owner, parties, TAG)
    everyone = set(owner).union(*parties.values())
    forbidden: list[bytes] = []
    for key in everyone:
        raw = key.encode()
        forbidden += [raw, hashlib.sha256(raw).digest(), hashlib.sha512(raw).digest()[:32], hash_to_group(TAG, key)]
    for name, messages in inbox.items():
        blob = b"".join(messages)
        assert not any(f in blob for f in forbidden), name
    for name in parties:
        # the owner's set, then the alignment (a position and a sample id per aligned customer): nothing
        # else, so a party learns which of its customers are aligned, not its intersection with the owner
        expected = [HEADER + POINT * len(owner), HEADER + (4 + SAMPLE_ID) * len(common)]
        assert [len(m) for m in inbox[name]] == expected
    # the owner: each party's set and its own set re-blinded, per party
    assert [len(m) for m in inbox["owner"]] == [
        size for ids_ in parties.values() for size in (HEADER + POINT * len(ids_), HEADER + POINT * len(owner))
    ]


def test_a_party_cannot_tell_which_of_its_shared_customers_another_party_lacks() -> None:
    """Owner {a..f}; the hotel holds a, b, c, x; the coffee chain holds a, b. The hotel shares a, b, c with
    the owner, but all it ever receives is the alignment of a and b: the same bytes whether or not it
    shares c with the owner."""
    hotel, coffee = ["a", "b", "c", "x"], ["a", "b"]
    aligned, inbox = align_in_memory(list("abcdef"), {"hotel": hotel, "coffee": coffee}, TAG)
    assert sorted(hotel[r] for r in aligned["hotel"].rows.values()) == ["a", "b"]
    _, alone = align_in_memory(list("abdef"), {"hotel": hotel, "coffee": coffee}, TAG)  # c not the owner's
    assert [len(m) for m in inbox["hotel"]][1:] == [len(m) for m in alone["hotel"]][1:]


def test_the_owner_sends_its_set_in_an_order_that_is_not_its_row_order_and_fresh_per_task() -> None:
    owner = ids("c", 200)
    first, second = PsiParty(owner, TAG), PsiParty(owner, TAG)
    a, b = first.blinded(), second.blinded()
    assert a != b  # a fresh secret per task: the same customers are not linkable across tasks
    points = decode_points(a, len(owner), "x")
    assert points == sorted(points)
    assert hash_to_group(TAG, "c00001") != hash_to_group(task_tag(31337, "0x" + "ab" * 20, 2), "c00001")


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(PsiError, match=r"^2 ids appear more than once \(e\.g\. 'a'\); ids must be unique$"):
        PsiParty(["a", "b", "a", "c", "c"], TAG)
    with pytest.raises(PsiError, match="no ids"):
        PsiParty([], TAG)
    owner, parties, common = three_parties(2)
    with pytest.raises(PsiError, match=rf"share {len(common)} customers, below the task's minimum of 1000"):
        align_in_memory(owner, parties, TAG, minimum=1000)


def test_malformed_or_malicious_messages_are_refused() -> None:
    party = PsiParty(ids("c", 10), TAG)
    good = decode_points(PsiParty(ids("d", 4), TAG).blinded(), 4, "x")
    identity = bytes([1]) + bytes(31)  # the neutral element
    low_order = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")  # order 8
    cases = {
        "not a PSI message": b"XXXXXXXX" + encode_points(good)[8:],
        "3 points, expected 4": encode_points(good[:3]),
        "bytes for 4 points": encode_points(good)[:-5],
        "point 0 is not in the prime-order group": encode_points([identity, *good[1:]]),
        "point 1 is not in the prime-order group": encode_points([good[0], low_order, *good[2:]]),
        "point 2 is not in the prime-order group": encode_points([*good[:2], b"\xff" * 32, good[3]]),
        "1 repeated points": encode_points([good[0], good[0], good[2], good[3]]),
        "5 bytes, not a PSI message": b"FCPSI",
    }
    for message, data in cases.items():
        with pytest.raises(PsiError, match=message):
            party.reblind(data, 4)


def test_a_malformed_alignment_is_refused() -> None:
    party = PsiParty(ids("c", 10), TAG)
    party.blinded()
    order = party.order
    pairs = [(i, bytes([i]) * SAMPLE_ID) for i in range(5)]
    assert sorted(Alignment.receive(Alignment.message(pairs), 5, order).rows.values()) == sorted(order[:5])
    good = Alignment.message(pairs)
    cases = {
        "names 5 rows, the intersection posted is 4": (good, 4),
        "bad magic": (b"X" * 8 + good[8:], 5),
        "bytes for 5 rows": (good[:-1], 5),
        "past our 10 ids": (Alignment.message([*pairs[:4], (10, b"\xee" * SAMPLE_ID)]), 5),
        "repeats a sample id": (Alignment.message([*pairs[:4], (7, pairs[0][1])]), 5),
        "not strictly increasing": (good[:12] + good[12 + 20 : 12 + 40] + good[12:32] + good[52:], 5),
    }
    for message, (data, count) in cases.items():
        with pytest.raises(PsiError, match=message):
            Alignment.receive(data, count, order)
