"""Sealed federations' parts: the spec's [sealing], a member's derived key, deterministic sealed models and
the model keys a reader learns from update headers (checked against the model's hash, never trusted)."""

from __future__ import annotations

import pytest
from eth_account import Account

from ledger.chain import Chain
from node.core.codec import content_hash
from node.errors import NodeError
from node.privacy.envelope import EnvelopeError
from node.privacy.seal import SealKey
from node.privacy.sealing import (
    Sealer,
    SealingSpec,
    auditor_address,
    member_seal_key,
    model_key,
    open_model,
    seal_model,
)
from tests.harness import Harness

GOOD = "0x" + SealKey.generate().public.hex()
CONTRACT = "0x" + "ab" * 20


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ([], "expected a table"),
        ({"auditor": []}, "unknown key 'auditor'"),
        ({"auditors": "0x00"}, "must be a list"),
        ({"auditors": ["0x1234"]}, "is not an X25519 public key"),
        ({"auditors": ["0x" + "00" * 32]}, "is not an X25519 public key"),
        ({"auditors": ["0x01" + "00" * 31]}, "is not an X25519 public key"),  # a low-order point
        ({"auditors": [GOOD, GOOD]}, "listed twice"),
    ],
)
def test_a_bad_sealing_table_is_one_clear_error(table: object, error: str) -> None:
    with pytest.raises(NodeError, match=error):
        SealingSpec.from_spec({"sealing": table})


def test_sealing_table_and_auditor_names() -> None:
    assert SealingSpec.from_spec({}) is None
    spec = SealingSpec.from_spec({"sealing": {"auditors": [GOOD]}})
    assert spec is not None and spec.auditors == (bytes.fromhex(GOOD[2:]),)
    assert list(spec.recipients) == [auditor_address(spec.auditors[0])]
    assert SealingSpec.from_spec({"sealing": {}}) == SealingSpec(())


def test_a_members_key_is_its_account_keys_and_bound_to_the_federation() -> None:
    account = Account.create()
    key = bytes(account.key)
    one = member_seal_key(key, 1, CONTRACT).public
    assert member_seal_key(key, 1, CONTRACT).public == one  # a restart derives the same key
    assert member_seal_key(key, 1, CONTRACT.upper().replace("0X", "0x")).public == one
    others = {member_seal_key(key, 2, CONTRACT).public, member_seal_key(key, 1, "0x" + "cd" * 20).public}
    assert one not in others and len(others) == 2
    assert member_seal_key(bytes(Account.create().key), 1, CONTRACT).public != one


def test_a_sealed_model_is_the_same_bytes_for_everyone_and_opens_only_with_its_key_and_place() -> None:
    model = b"a model's canonical bytes " * 50
    data, key = seal_model(model, 1, CONTRACT, 4)
    assert seal_model(model, 1, CONTRACT, 4) == (data, key)  # every voter publishes the same CID
    assert model not in data and key == model_key(model, 1, CONTRACT, 4)
    assert open_model(data, key, 1, CONTRACT, 4) == model
    assert seal_model(model, 1, CONTRACT, 5)[0] != data and seal_model(model + b"x", 1, CONTRACT, 4)[1] != key
    for args in ((bytes(32), 1, CONTRACT, 4), (key, 1, CONTRACT, 5), (key, 2, CONTRACT, 4)):
        with pytest.raises(EnvelopeError):
            open_model(data, *args)
    with pytest.raises(EnvelopeError, match="not a sealed fedchain model"):
        open_model(model, key, 1, CONTRACT, 4)


def test_a_reader_learns_model_keys_from_headers_and_keeps_only_one_that_checks(embedded: Chain) -> None:
    h = Harness.create(embedded, founders=2)
    a, b = h.members
    spec = SealingSpec(())
    writer = Sealer(h.fed, a.address, member_seal_key(bytes(a.key), embedded.chain_id, h.fed.address), spec)
    reader_key = member_seal_key(bytes(b.key), embedded.chain_id, h.fed.address)
    reader = Sealer(h.fed, b.address, reader_key, spec)
    model = b"round 3's model" * 30
    sealed = writer.seal_model(model, 3)
    with pytest.raises(EnvelopeError, match="no key this reader holds"):
        reader.model_opener(3, content_hash(model))(sealed)
    # Headers offer keys: a wrong one (a lying member's) and the right one; only the right one is kept.
    h.fed.join(a)
    h.fed.join(b)
    for m, k in ((a, writer.key), (b, reader_key)):
        h.fed.set_encryption_key(m, k.public)
    writer.known[3] = b"\x07" * 32  # a key that is not round 3's
    lie = writer.seal_update(b"content", 4, 3)
    writer.remember(3, model)
    honest = writer.seal_update(b"content", 4, 3)
    for data in (lie, honest):
        assert reader.update_opener(a.address, 4, {b.address: reader_key.public})(data) == b"content"
    assert reader.model_opener(3, content_hash(model))(sealed) == model
    assert reader.known[3] == model_key(model, embedded.chain_id, h.fed.address, 3)
    with pytest.raises(EnvelopeError, match="no key"):  # a model that does not hash to the chain's
        Sealer(h.fed, b.address, reader_key, spec, {3: reader.known[3]}).model_opener(3, bytes(32))(sealed)
