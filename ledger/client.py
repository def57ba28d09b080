"""Typed clients for the Federation contract and its reward token.

Transactions are signed locally by the caller's account (from an encrypted
keystore) and sent raw, so the same code runs against eth-tester and any
JSON-RPC node. A revert becomes the named ContractRevert subclass; the gas is
estimated first, so a call that would revert costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, ContractPanicError
from web3.types import TxReceipt

from .chain import Chain
from .contracts import artifact, decode_revert
from .errors import ContractRevert, revert_class
from .types import Accounting, MemberInfo, MemberStatus, Phase, Proposal, RoundInfo

__all__ = ["FederationClient", "TokenClient", "commitment", "proposal_id", "revert_error", "send"]

_GAS_HEADROOM = 600_000


def _gas_limit(chain: Chain, estimate: int) -> int:
    """Room above the estimate: the state can move between estimate and inclusion.

    A commit, vote or join may be the transaction that closes a phase or a round
    (lazy transitions), which costs far more than the estimate made before another
    peer's transaction landed. Unused gas is not charged.
    """
    cap = chain.block_gas_limit // 2
    return min(cap, 2 * estimate + _GAS_HEADROOM)


def commitment(chain_id: int, federation: str, round_id: int, member: str, content_hash: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(chainId, federation, round, member, contentHash, salt)), as the contract checks."""
    encoded = abi_encode(
        ["uint256", "address", "uint256", "address", "bytes32", "bytes32"],
        [chain_id, federation, round_id, member, content_hash, salt],
    )
    return keccak(encoded)


def proposal_id(model_hash: bytes, scores: Sequence[int]) -> bytes:
    """keccak256(abi.encode(modelHash, scores)): the id the contract counts votes under."""
    return keccak(abi_encode(["bytes32", "uint32[]"], [model_hash, list(scores)]))


def revert_error(exc: ContractLogicError) -> ContractRevert:
    """The named ContractRevert behind a web3 revert exception."""
    if isinstance(exc, ContractPanicError):
        return ContractRevert(f"the contract panicked: {exc.message}")
    data = exc.data.get("data") if isinstance(exc.data, dict) else exc.data  # some nodes nest it
    if isinstance(data, str) and len(data) >= 10:
        return decode_revert(data)
    return ContractRevert(f"the contract reverted: {exc.message or exc}")


def send(chain: Chain, fn: ContractFunction, signer: LocalAccount) -> TxReceipt:
    """Sign and send a contract call; returns its receipt or raises the named revert."""
    w3 = chain.w3
    try:
        gas = fn.estimate_gas({"from": signer.address})
    except ContractLogicError as exc:
        raise revert_error(exc) from exc
    tx = fn.build_transaction(
        {
            "from": signer.address,
            "nonce": w3.eth.get_transaction_count(signer.address, "pending"),
            "gas": _gas_limit(chain, gas),
            "chainId": chain.chain_id,
        }
    )
    signed = signer.sign_transaction(tx)  # type: ignore[arg-type]
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.05)
    if receipt["status"] != 1:
        # The state moved between estimate and inclusion; replay to name the error.
        try:
            fn.call({"from": signer.address})
        except ContractLogicError as exc:
            raise revert_error(exc) from exc
        raise ContractRevert(f"transaction {tx_hash.hex()} reverted")
    return receipt


class TokenClient:
    """The ERC-20 reward token."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.contract: Contract = chain.w3.eth.contract(
            address=to_checksum_address(address), abi=artifact("RewardToken")["abi"]
        )
        self.address: str = self.contract.address

    def balance_of(self, account: str) -> int:
        return int(self.contract.functions.balanceOf(account).call())

    def allowance(self, owner: str, spender: str) -> int:
        return int(self.contract.functions.allowance(owner, spender).call())

    def approve(self, signer: LocalAccount, spender: str, amount: int) -> TxReceipt:
        return send(self.chain, self.contract.functions.approve(spender, amount), signer)

    def transfer(self, signer: LocalAccount, to: str, amount: int) -> TxReceipt:
        return send(self.chain, self.contract.functions.transfer(to, amount), signer)


class FederationClient:
    """Every call of the Federation contract, typed."""

    def __init__(self, chain: Chain, address: str, abi: list[dict[str, Any]] | None = None) -> None:
        self.chain = chain
        self.contract: Contract = chain.w3.eth.contract(
            address=to_checksum_address(address), abi=abi or artifact("Federation")["abi"]
        )
        self.address: str = self.contract.address
        self._token: TokenClient | None = None

    @property
    def token(self) -> TokenClient:
        if self._token is None:
            self._token = TokenClient(self.chain, self.contract.functions.token().call())
        return self._token

    def _send(self, signer: LocalAccount, name: str, *args: Any) -> TxReceipt:
        return send(self.chain, getattr(self.contract.functions, name)(*args), signer)

    # -- membership ---------------------------------------------------------

    def approve_member(self, signer: LocalAccount, candidate: str) -> TxReceipt:
        return self._send(signer, "approveMember", candidate)

    def join(self, signer: LocalAccount) -> TxReceipt:
        """Approve the stake on the token (if needed) and join."""
        stake = self.config()["stake"]
        if self.token.allowance(signer.address, self.address) < stake:
            self.token.approve(signer, self.address, stake)
        return self._send(signer, "join")

    def add_stake(self, signer: LocalAccount, amount: int) -> TxReceipt:
        self.token.approve(signer, self.address, amount)
        return self._send(signer, "addStake", amount)

    def leave(self, signer: LocalAccount) -> TxReceipt:
        return self._send(signer, "leave")

    def fund(self, signer: LocalAccount, amount: int) -> TxReceipt:
        """Approve `amount` on the token and add it to the reward pool."""
        self.token.approve(signer, self.address, amount)
        return self._send(signer, "fund", amount)

    # -- rounds -------------------------------------------------------------

    def advance(self, signer: LocalAccount) -> TxReceipt:
        return self._send(signer, "advance")

    def commit(self, signer: LocalAccount, round_id: int, commitment_: bytes) -> TxReceipt:
        return self._send(signer, "commit", round_id, commitment_)

    def reveal(self, signer: LocalAccount, round_id: int, content_hash: bytes, cid: str, salt: bytes) -> TxReceipt:
        return self._send(signer, "reveal", round_id, content_hash, cid, salt)

    def vote(
        self, signer: LocalAccount, round_id: int, model_hash: bytes, model_cid: str, scores: Sequence[int]
    ) -> TxReceipt:
        """Vote for (model, scores): by id if someone proposed it already (cheaper), else in full."""
        pid = proposal_id(model_hash, scores)
        if self.proposal_votes(round_id, pid) > 0:
            return self._send(signer, "voteFor", round_id, pid)
        return self._send(signer, "vote", round_id, model_hash, model_cid, list(scores))

    def finalize(
        self, signer: LocalAccount, round_id: int, proposal: Proposal | None = None, from_block: int = 0
    ) -> TxReceipt:
        """Finalize on the winning proposal (read from its Proposed event, from `from_block` on, unless given)."""
        p = proposal or self.winning_proposal(round_id, from_block)
        return self._send(signer, "finalize", round_id, p.model_hash, p.model_cid, list(p.scores))

    def winning_proposal(self, round_id: int, from_block: int = 0) -> Proposal:
        """Round `round_id`'s quorum proposal, from its Proposed event (logged at or after `from_block`)."""
        winner = self.round(round_id).winner
        logs = self.contract.events.Proposed.get_logs(
            from_block=from_block, argument_filters={"round": round_id, "proposal": winner}
        )
        if winner == bytes(32) or not logs:
            raise revert_class("NoQuorum")(f"NoQuorum: round {round_id} has no proposal with quorum yet")
        args = logs[0]["args"]
        return Proposal(bytes(args["modelHash"]), str(args["modelCid"]), [int(s) for s in args["scores"]])

    def claim(self, signer: LocalAccount) -> TxReceipt:
        return self._send(signer, "claim")

    def commitment_for(self, round_id: int, member: str, content_hash: bytes, salt: bytes) -> bytes:
        return commitment(self.chain.chain_id, self.address, round_id, member, content_hash, salt)

    # -- views --------------------------------------------------------------

    def config(self) -> dict[str, int]:
        values = self.contract.functions.config().call()
        names = (
            *("stake", "reward_per_round", "commit_window", "reveal_window", "vote_window"),
            *("quorum_bps", "min_peers", "slash_bps"),
        )
        return dict(zip(names, (int(v) for v in values), strict=True))

    def spec_hash(self) -> bytes:
        return bytes(self.contract.functions.specHash().call())

    def current_round(self) -> int:
        return int(self.contract.functions.currentRound().call())

    def last_finalized(self) -> int:
        return int(self.contract.functions.lastFinalized().call())

    def round(self, round_id: int) -> RoundInfo:
        v = self.contract.functions.roundInfo(round_id).call()
        opened, phase_at, members, eligible, commits, reveals, votes = (int(x) for x in v[1:8])
        return RoundInfo(
            round_id,
            Phase(v[0]),
            opened,
            phase_at,
            members,
            eligible,
            commits,
            reveals,
            votes,
            bytes(v[8]),
            bytes(v[9]),
            str(v[10]),
        )

    def phase(self, round_id: int) -> Phase:
        """The phase once pending timeouts apply (what the next transaction will see)."""
        return Phase(self.contract.functions.phaseOf(round_id).call())

    def status(self, round_id: int, member: str) -> MemberStatus:
        return MemberStatus(self.contract.functions.statusOf(round_id, member).call())

    def members(self) -> list[str]:
        return [str(a) for a in self.contract.functions.memberList().call()]

    def member(self, account: str) -> MemberInfo:
        active, index, stake, joined = self.contract.functions.memberOf(account).call()
        return MemberInfo(account, bool(active), int(index), int(stake), int(joined))

    def is_admitted(self, account: str) -> bool:
        return bool(self.contract.functions.admitted(account).call())

    def rewards(self, account: str) -> dict[str, int]:
        f = self.contract.functions
        return {
            "credited": int(f.credited(account).call()),
            "claimed": int(f.claimedBy(account).call()),
            "slashed": int(f.slashedBy(account).call()),
        }

    def proposal_votes(self, round_id: int, proposal_id: bytes) -> int:
        votes, _ = self.contract.functions.proposalOf(round_id, proposal_id).call()
        return int(votes)

    def accounting(self) -> Accounting:
        f = self.contract.functions
        return Accounting(
            staked=int(f.totalStaked().call()),
            pool=int(f.rewardPool().call()),
            unclaimed=int(f.totalUnclaimed().call()),
            claimed=int(f.totalClaimed().call()),
            slashed=int(f.totalSlashed().call()),
            held=self.token.balance_of(self.address),
        )
