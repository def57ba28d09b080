"""A member contract paid in a token with transfer callbacks cannot re-enter `claim`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from ledger.chain import Chain
from ledger.client import FederationClient, commitment, send
from ledger.compile import compile_sources
from ledger.contracts import artifact
from ledger.errors import revert_class
from ledger.spec import spec_from_dict
from tests.harness import CID, funded

HELPERS = Path(__file__).resolve().parent.parent / "contracts"


def _deploy(chain: Chain, who: LocalAccount, art: dict[str, Any], *args: Any) -> Any:
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = factory.constructor(*args).build_transaction(
        {"from": who.address, "nonce": chain.w3.eth.get_transaction_count(who.address), "chainId": chain.chain_id}
    )
    receipt = chain.w3.eth.wait_for_transaction_receipt(
        chain.w3.eth.send_raw_transaction(who.sign_transaction(tx).raw_transaction)
    )
    return chain.w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


def test_reentrant_claim_is_rejected_and_loses_nothing(chain: Chain) -> None:
    arts = compile_sources(HELPERS)
    deployer, attacker, honest = funded(chain, 3)
    token = _deploy(chain, deployer, arts["CallbackToken"], 10**24)
    member = _deploy(chain, attacker, arts["ReentrantMember"])
    spec = spec_from_dict({"chain": {"min_peers": 2}, "members": {"founders": [member.address, honest.address]}})
    federation = _deploy(
        chain, deployer, artifact("Federation"), token.address, spec.hash, spec.chain_config(), spec.founders
    )
    fed = FederationClient(chain, federation.address)
    stake = fed.config()["stake"]
    for to in (member.address, honest.address):
        send(chain, token.functions.transfer(to, 10 * stake), deployer)
    fed.fund(deployer, 10 * stake)

    def via_member(fn: str, *args: Any, target: Any = fed.contract) -> None:
        data = target.encode_abi(fn, args=list(args))
        send(chain, member.functions.exec(target.address, data), attacker)

    send(chain, member.functions.setFederation(fed.address), attacker)
    via_member("approve", fed.address, stake, target=token)
    via_member("join")
    fed.join(honest)
    salts = {a: (os.urandom(32), os.urandom(32)) for a in (member.address, honest.address)}
    (m_content, m_salt), (h_content, h_salt) = salts[member.address], salts[honest.address]
    via_member("commit", 1, commitment(chain.chain_id, fed.address, 1, member.address, m_content, m_salt), bytes(32), 0)
    fed.commit(honest, 1, commitment(chain.chain_id, fed.address, 1, honest.address, h_content, h_salt))
    via_member("reveal", 1, m_content, CID, m_salt, (bytes(32), "", []))
    fed.reveal(honest, 1, h_content, CID, h_salt)
    scores = [1, 1]
    via_member("vote", 1, b"\x01" * 32, CID, scores)
    fed.vote(honest, 1, b"\x01" * 32, CID, scores)
    fed.finalize(honest, 1)

    credited = fed.rewards(member.address)["credited"]
    balance = int(token.functions.balanceOf(member.address).call())
    assert credited > 0
    with pytest.raises(revert_class("ReentrancyGuardReentrantCall")):
        via_member("claim")
    assert fed.rewards(member.address)["credited"] == credited
    assert int(token.functions.balanceOf(member.address).call()) == balance
    fed.claim(honest)  # the guard does not block ordinary claims
    acc = fed.accounting()
    assert acc.held == acc.staked + acc.pool + acc.unclaimed
