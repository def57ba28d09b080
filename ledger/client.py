"""Typed clients for the Federation contract and its reward token.

Transactions are signed locally by the caller's account (from an encrypted
keystore) and sent raw, so the same code runs against eth-tester and any
JSON-RPC node. A revert becomes the named ContractRevert subclass; the gas is
estimated first, so a call that would revert costs nothing. Callers never see
web3: a network failure becomes `ChainUnreachable` here (httpx's
`map_exceptions` pattern), so a retry loop names only fedchain's errors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3._utils.transactions import fill_transaction_defaults
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, ContractPanicError, TransactionNotFound
from web3.types import LogReceipt, TxParams, TxReceipt

from .abi import Event, functions
from .abi import events as abi_events
from .chain import Chain, network_errors
from .contracts import artifact, decode_revert
from .errors import ChainUnreachable, ContractRevert, DeploymentError, revert_class
from .types import Accounting, MemberInfo, MemberStatus, Phase, Proposal, Reveal, RoundInfo, StepView

__all__ = [
    "Call",
    "ContractClient",
    "StakedClient",
    "FederationClient",
    "TokenClient",
    "commitment",
    "network_errors",
    "proposal_id",
    "revert_error",
    "send",
]

_GAS_HEADROOM = 600_000
_T = TypeVar("_T")


def _gas_limit(chain: Chain, estimate: int) -> int:
    """Room above the estimate: the state can move between estimate and inclusion.

    A commit, vote or join may be the transaction that closes a phase or a round
    (lazy transitions), which costs far more than the estimate made before another
    peer's transaction landed. Unused gas is not charged.
    """
    return min(chain.tx_gas_cap, 2 * estimate + _GAS_HEADROOM)


def commitment(chain_id: int, federation: str, round_id: int, member: str, content_hash: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(chainId, federation, round, member, contentHash, salt)), as the contract checks."""
    encoded = abi_encode(
        ["uint256", "address", "uint256", "address", "bytes32", "bytes32"],
        [chain_id, federation, round_id, member, content_hash, salt],
    )
    return keccak(encoded)


def proposal_id(model_hash: bytes, model_cid: str, scores: Sequence[int]) -> bytes:
    """keccak256(abi.encode(modelHash, keccak256(modelCid), scores)): the id the contract counts votes under.

    The CID is part of it, so a voter endorses exactly the CID it published itself.
    """
    return keccak(
        abi_encode(["bytes32", "bytes32", "uint32[]"], [model_hash, keccak(model_cid.encode()), list(scores)])
    )


def revert_error(exc: ContractLogicError) -> ContractRevert:
    """The named ContractRevert behind a web3 revert exception."""
    if isinstance(exc, ContractPanicError):
        return ContractRevert(f"the contract panicked: {exc.message}")
    data = exc.data.get("data") if isinstance(exc.data, dict) else exc.data  # some nodes nest it
    if isinstance(data, str) and len(data) >= 10:
        return decode_revert(data)
    return ContractRevert(f"the contract reverted: {exc.message or exc}")


@dataclass(frozen=True)
class Call:
    """A contract call as it goes on the wire: the contract's address and the calldata."""

    to: str
    data: bytes

    @classmethod
    def of(cls, fn: ContractFunction) -> Call:
        """A web3 contract function with its arguments, encoded."""
        return cls(str(fn.address), bytes(HexBytes(fn._encode_transaction_data())))

    def params(self, sender: str) -> TxParams:
        return {"from": sender, "to": self.to, "data": self.data}


def send(chain: Chain, fn: ContractFunction | Call, signer: LocalAccount, gas: int | None = None) -> TxReceipt:
    """Sign and send a contract call; returns its receipt or raises the named revert.

    With `gas` (a limit known to cover the call), nothing is estimated: on a JSON-RPC
    chain one `eth_call` first names a revert before it costs anything; on the embedded
    chain, which mines each transaction alone at once, the transaction is sent as it
    is and only a reverted one is replayed to name its error. Without `gas`, the gas
    is estimated (which also names a revert) and given headroom.
    """
    call = fn if isinstance(fn, Call) else Call.of(fn)
    with network_errors(chain.url or "the chain"):
        return _send(chain, call, signer, gas)


def _send(chain: Chain, call: Call, signer: LocalAccount, gas: int | None) -> TxReceipt:
    w3 = chain.w3
    params = call.params(signer.address)
    try:
        if gas is None:
            gas = _gas_limit(chain, w3.eth.estimate_gas(params))
        elif chain.kind == "rpc":
            w3.eth.call(params)
    except ContractLogicError as exc:
        raise revert_error(exc) from exc
    nonce = w3.eth.get_transaction_count(signer.address, "pending")
    tx = fill_transaction_defaults(w3, {**params, "nonce": nonce, "gas": gas, "chainId": chain.chain_id})
    signed = signer.sign_transaction(tx)  # type: ignore[arg-type]
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = _receipt(chain, tx_hash)
    chain.sent(int(receipt["blockNumber"]))
    if receipt["status"] != 1:
        # The state moved between estimate and inclusion; replay to name the error.
        try:
            w3.eth.call(params)
        except ContractLogicError as exc:
            raise revert_error(exc) from exc
        raise ContractRevert(f"transaction {tx_hash.hex()} reverted")
    return receipt


def _receipt(chain: Chain, tx_hash: HexBytes, timeout: float = 120.0) -> TxReceipt:
    """The transaction's receipt, asked for at once, then after 5 ms, 10 ms, ... up to 0.5 s apart.

    An automining node has it at once or within milliseconds, a chain with block times
    after seconds: a fixed 50 ms poll cost every transaction 50 ms on the first and
    made a 12-peer round wait about a second in all.
    """
    deadline, pause = time.monotonic() + timeout, 0.005
    while True:
        try:
            return chain.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            if time.monotonic() > deadline:
                raise ChainUnreachable(f"transaction {tx_hash.hex()} not mined within {timeout:.0f}s") from None
            time.sleep(pause)
            pause = min(0.5, pause * 2)


class ContractClient:
    """A deployed contract: views and transactions, with network failures mapped at one call."""

    def __init__(self, chain: Chain, address: str, abi: list[dict[str, Any]]) -> None:
        self.chain = chain
        self.contract: Contract = chain.w3.eth.contract(address=to_checksum_address(address), abi=abi)
        self.address: str = self.contract.address
        self._functions = functions(abi)
        self._events = abi_events(abi)
        self._decoded_logs: dict[tuple[bytes, int], dict[str, Any]] = {}

    def _call(self, name: str, *args: Any) -> Call:
        return Call(self.address, self._functions[name].encode(args))

    def _view(self, name: str, *args: Any) -> Any:
        fn = self._functions[name]

        def read(block: int | str) -> Any:
            data = self.chain.call(self.address, fn.encode(args), block)
            if not data and fn.outputs:  # empty output: is the contract still there?
                if self.chain.w3.eth.get_code(self.contract.address):
                    raise ContractRevert(f"{name} returned nothing")
                raise DeploymentError(
                    f"no contract at {self.address} on chain {self.chain.chain_id} any more: "
                    "the chain was restarted without its state (or the endpoint now serves another chain)"
                )
            return fn.decode(data)

        with network_errors(self.chain.url or "the chain"):
            return self.chain.view((self.address, name, args), read)

    def _send(self, signer: LocalAccount, name: str, *args: Any) -> TxReceipt:
        return send(self.chain, self._call(name, *args), signer, self._gas)

    def events(self, name: str, from_block: int = 0) -> list[dict[str, Any]]:
        """Every `name` event logged at or after `from_block`, in log order: its `args`, `blockNumber`,
        `transactionHash` and `logIndex` (read through the chain's incremental log cache: only blocks
        not read before are asked for)."""
        event = self._events[name]
        with network_errors(self.chain.url or "the chain"):
            logs = self.chain.logs(self.address, from_block)
        return [self._decoded(event, lg) for lg in logs if lg["topics"] and bytes(lg["topics"][0]) == event.topic]

    def _decoded(self, event: Event, log: LogReceipt) -> dict[str, Any]:
        """`log` decoded as `event`, once (a peer reads a round's reveals at every step of its reveal phase)."""
        key = (bytes(log["blockHash"]), int(log["logIndex"]))
        found = self._decoded_logs.get(key)
        if found is None:
            if len(self._decoded_logs) >= 100_000:  # a long-running daemon: start over rather than grow
                self._decoded_logs.clear()
            found = self._decoded_logs[key] = {
                "event": event.name,
                "args": event.decode(log),
                "blockNumber": int(log["blockNumber"]),
                "transactionHash": log["transactionHash"],
                "logIndex": int(log["logIndex"]),
            }
        return found

    @property
    def _gas(self) -> int | None:
        """A gas limit that covers every call of this contract (None: estimate each)."""
        return None


class TokenClient(ContractClient):
    """The ERC-20 reward token."""

    def __init__(self, chain: Chain, address: str) -> None:
        super().__init__(chain, address, artifact("RewardToken")["abi"])

    def balance_of(self, account: str) -> int:
        return int(self._view("balanceOf", account))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self._view("allowance", owner, spender))

    def approve(self, signer: LocalAccount, spender: str, amount: int) -> TxReceipt:
        return self._send(signer, "approve", spender, amount)

    def transfer(self, signer: LocalAccount, to: str, amount: int) -> TxReceipt:
        return self._send(signer, "transfer", to, amount)


class StakedClient(ContractClient):
    """A contract that holds tokens (its `token()` view) and whose every call fits in half a block."""

    def __init__(self, chain: Chain, address: str, abi: list[dict[str, Any]]) -> None:
        super().__init__(chain, address, abi)
        self._token: TokenClient | None = None

    @property
    def _gas(self) -> int:
        """Half a block, at most 2^24 (`Chain.tx_gas_cap`): more than any call of these contracts needs
        (the heaviest, a federation round's settlement, loops over at most 256 members;
        tests/ledger/test_gas.py checks it fits), unused gas is not charged, and no estimate (a binary
        search of executions) is needed."""
        return self.chain.tx_gas_cap

    @property
    def token(self) -> TokenClient:
        if self._token is None:
            self._token = TokenClient(self.chain, self._view("token"))
        return self._token


class FederationClient(StakedClient):
    """Every call of the Federation contract, typed."""

    def __init__(self, chain: Chain, address: str, abi: list[dict[str, Any]] | None = None) -> None:
        super().__init__(chain, address, abi or artifact("Federation")["abi"])
        self._config: dict[str, int] | None = None

    # -- membership ---------------------------------------------------------

    def approve_member(self, signer: LocalAccount, candidate: str) -> TxReceipt:
        return self._send(signer, "approveMember", candidate)

    def join(self, signer: LocalAccount) -> TxReceipt:
        """Approve the stake on the token (if needed) and join."""
        stake = self.config()["stake"]
        if self.token.allowance(signer.address, self.address) < stake:
            self.token.approve(signer, self.address, stake)
        return self._send(signer, "join")

    def set_encryption_key(self, signer: LocalAccount, key: bytes) -> TxReceipt:
        """Register the member's X25519 public key for sealed updates (once)."""
        return self._send(signer, "setEncryptionKey", key)

    def encryption_keys(self) -> dict[str, tuple[bytes, int, bool]]:
        """Each listed member's registered key, the first round that must seal to it and whether it is a member
        now (those without a key left out), in join order."""
        members, keys, since, active = self._view("encryptionKeys")
        return {
            str(a): (bytes(k), int(s), bool(on))
            for a, k, s, on in zip(members, keys, since, active, strict=True)
            if any(bytes(k))
        }

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

    def commit(
        self, signer: LocalAccount, round_id: int, commitment_: bytes, vote: bytes = bytes(32), epsilon_milli: int = 0
    ) -> TxReceipt:
        """Commit to round `round_id`, voting (unless `vote` is zero) for proposal `vote` of the round before,
        logging the differential privacy spent with the update (thousandths of epsilon; 0: no DP)."""
        return self._send(signer, "commit", round_id, commitment_, vote, epsilon_milli)

    def reveal(
        self,
        signer: LocalAccount,
        round_id: int,
        content_hash: bytes,
        cid: str,
        salt: bytes,
        previous: Proposal | None = None,
    ) -> TxReceipt:
        """Reveal; with `previous` (the round before's winning proposal), finalize that round first if it can be."""
        body = (previous.model_hash, previous.model_cid, list(previous.scores)) if previous else (bytes(32), "", [])
        return self._send(signer, "reveal", round_id, content_hash, cid, salt, body)

    def vote(
        self, signer: LocalAccount, round_id: int, model_hash: bytes, model_cid: str, scores: Sequence[int]
    ) -> TxReceipt:
        """Vote for (model, scores): by id if someone proposed it already (cheaper), else in full."""
        pid = proposal_id(model_hash, model_cid, scores)
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
        found = [
            ev["args"]
            for ev in self.events("Proposed", from_block)
            if ev["args"]["round"] == round_id and bytes(ev["args"]["proposal"]) == winner
        ]
        if winner == bytes(32) or not found:
            raise revert_class("NoQuorum")(f"NoQuorum: round {round_id} has no proposal with quorum yet")
        args = found[0]
        return Proposal(bytes(args["modelHash"]), str(args["modelCid"]), [int(s) for s in args["scores"]])

    def committers(self, round_id: int, from_block: int = 0) -> list[str]:
        """Every member that committed to `round_id` (its `Committed` events at or after `from_block`)."""
        return [
            str(ev["args"]["member"])
            for ev in self.events("Committed", from_block)
            if int(ev["args"]["round"]) == round_id
        ]

    def reveals(self, rounds: Sequence[int], from_block: int = 0) -> list[Reveal]:
        """Every `Revealed` event of `rounds` logged at or after `from_block`, in log order."""
        wanted = set(rounds)
        return [
            Reveal(
                int(ev["args"]["round"]),
                str(ev["args"]["member"]),
                bytes(ev["args"]["contentHash"]),
                str(ev["args"]["cid"]),
                int(ev["blockNumber"]),
            )
            for ev in self.events("Revealed", from_block)
            if int(ev["args"]["round"]) in wanted
        ]

    def block_number(self) -> int:
        """The chain's latest block number."""
        with network_errors(self.chain.url or "the chain"):
            return self.chain.block_number()

    def claim(self, signer: LocalAccount) -> TxReceipt:
        return self._send(signer, "claim")

    def commitment_for(self, round_id: int, member: str, content_hash: bytes, salt: bytes) -> bytes:
        return commitment(self.chain.chain_id, self.address, round_id, member, content_hash, salt)

    # -- views --------------------------------------------------------------

    def config(self) -> dict[str, int]:
        """The federation's parameters (immutable in the contract: read once)."""
        if self._config is None:
            values = self._view("config")
            names = (
                *("stake", "reward_per_round", "commit_window", "reveal_window", "vote_window"),
                *("quorum_bps", "min_peers", "slash_bps"),
            )
            self._config = dict(zip(names, (int(v) for v in values), strict=True))
        return dict(self._config)

    def spec_hash(self) -> bytes:
        return bytes(self._view("specHash"))

    def current_round(self) -> int:
        return int(self._view("currentRound"))

    def last_finalized(self) -> int:
        return int(self._view("lastFinalized"))

    def round(self, round_id: int) -> RoundInfo:
        v = self._view("roundInfo", round_id)
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
            bool(v[11]),
        )

    def can_finalize(self, round_id: int) -> bool:
        """Whether `finalize` would go through now: every revealer voted on a winner, or the deadline passed."""
        return bool(self._view("canFinalize", round_id))

    def phase(self, round_id: int) -> Phase:
        """The phase once pending timeouts apply (what the next transaction will see)."""
        return Phase(self._view("phaseOf", round_id))

    def status(self, round_id: int, member: str) -> MemberStatus:
        return MemberStatus(self._view("statusOf", round_id, member))

    def step_view(self, member: str) -> StepView:
        """The open round, its live and stored phase, the newest finalized round and `member`'s status: one call."""
        r, live, stored, finalized, status, voting, prev, finalizable, due = self._view("stepView", member)
        return StepView(
            int(r),
            Phase(live),
            Phase(stored),
            int(finalized),
            MemberStatus(status),
            bool(voting),
            MemberStatus(prev),
            bool(finalizable),
            bool(due),
        )

    def members(self) -> list[str]:
        return [str(a) for a in self._view("memberList")]

    def member(self, account: str) -> MemberInfo:
        active, index, stake, joined = self._view("memberOf", account)
        return MemberInfo(account, bool(active), int(index), int(stake), int(joined))

    def approvals(self, candidate: str) -> int:
        """Approvals `candidate` holds (given since the last member left)."""
        return int(self._view("approvals", candidate))

    def founders_pending(self) -> int:
        """Founders that have never joined."""
        return int(self._view("foundersPending"))

    def active_founders(self) -> int:
        """Founders that are members now."""
        return int(self._view("activeFounders"))

    def admissions_per_round(self) -> int:
        """How many candidates may be admitted while one round is open."""
        return int(self._view("MAX_ADMISSIONS_PER_ROUND"))

    def is_admitted(self, account: str) -> bool:
        return bool(self._view("admitted", account))

    def rewards(self, account: str) -> dict[str, int]:
        return {
            "credited": int(self._view("credited", account)),
            "claimed": int(self._view("claimedBy", account)),
            "slashed": int(self._view("slashedBy", account)),
        }

    def proposal_votes(self, round_id: int, proposal_id: bytes) -> int:
        votes = self._view("proposalOf", round_id, proposal_id)
        return int(votes)

    def accounting(self) -> Accounting:
        return Accounting(
            staked=int(self._view("totalStaked")),
            pool=int(self._view("rewardPool")),
            unclaimed=int(self._view("totalUnclaimed")),
            claimed=int(self._view("totalClaimed")),
            slashed=int(self._view("totalSlashed")),
            held=self.token.balance_of(self.address),
        )
