"""The VerticalTask contract: a cross-domain task's escrow, alignment, epochs and payout, typed.

One contract per task (contracts/VerticalTask.sol): the task owner deploys it
with the invited feature parties and the terms, escrows the bounty, and the
parties stake. Every message of the private set intersection and of training is
logged (`post`: sender, recipient, kind, sha256, CID); each member commits the
Merkle root of its training messages once per epoch (`commit_epoch`), which is
cheaper than one transaction a message; the owner settles with the Shapley
shares. Stages and timeouts: docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from .chain import Chain
from .client import StakedClient
from .contracts import artifact
from .deploy import deploy_contract

__all__ = ["Kind", "PartyInfo", "Stage", "TaskTerms", "VerticalTaskClient", "deploy_task"]


class Stage(IntEnum):
    """Where a task is (mirrors VerticalTask.Stage)."""

    OPEN = 0
    ALIGNING = 1
    TRAINING = 2
    VALUING = 3
    PAID = 4
    CANCELLED = 5


class Kind(IntEnum):
    """What a logged message carries (mirrors VerticalTask.Kind)."""

    PSI = 0
    ALIGNMENT = 1
    EMBEDDING = 2
    GRADIENT = 3
    QUERY = 4  # once paid: the owner scores new customers (node.vertical.scoring)
    REPLY = 5


@dataclass(frozen=True)
class TaskTerms:
    """What the owner fixes at deployment (token units, seconds, basis points)."""

    bounty: int
    stake: int
    epochs: int
    min_intersection: int
    window: int
    slash_bps: int


@dataclass(frozen=True)
class PartyInfo:
    invited: bool
    joined: bool
    dropped: bool
    confirmed: bool
    epochs_done: int


class VerticalTaskClient(StakedClient):
    """Every call of one VerticalTask contract (its heaviest, the settlement, loops over at most 8 parties)."""

    def __init__(self, chain: Chain, address: str) -> None:
        super().__init__(chain, address, artifact("VerticalTask")["abi"])

    # -- transactions ---------------------------------------------------------

    def fund(self, owner: LocalAccount, key: bytes) -> TxReceipt:
        """Approve the bounty on the token, escrow it, and register the owner's X25519 public `key`."""
        self.token.approve(owner, self.address, self.terms().bounty)
        return self._send(owner, "fund", key)

    def join(self, party: LocalAccount, key: bytes) -> TxReceipt:
        """Approve the stake on the token, join, and register the party's X25519 public `key`."""
        self.token.approve(party, self.address, self.terms().stake)
        return self._send(party, "join", key)

    def cancel(self, signer: LocalAccount) -> TxReceipt:
        return self._send(signer, "cancel")

    def post(
        self, sender: LocalAccount, to: str, kind: Kind, epoch: int, seq: int, digest: bytes, cid: str
    ) -> TxReceipt:
        """Log a message to `to`: its kind, place (epoch, seq), sha256 of the stored bytes, and CID."""
        return self._send(sender, "post", to, int(kind), epoch, seq, digest, cid)

    def align(self, owner: LocalAccount, size: int, root: bytes) -> TxReceipt:
        return self._send(owner, "align", size, root)

    def confirm(self, party: LocalAccount, size: int) -> TxReceipt:
        return self._send(party, "confirm", size)

    def leave(self, party: LocalAccount) -> TxReceipt:
        return self._send(party, "leave")

    def commit_epoch(self, member: LocalAccount, epoch: int, root: bytes) -> TxReceipt:
        return self._send(member, "commitEpoch", epoch, root)

    def timeout(self, signer: LocalAccount, account: str) -> TxReceipt:
        return self._send(signer, "timeout", account)

    def settle(self, owner: LocalAccount, table_hash: bytes, cid: str, shares: Sequence[int]) -> TxReceipt:
        return self._send(owner, "settle", table_hash, cid, list(shares))

    def claim(self, signer: LocalAccount) -> TxReceipt:
        return self._send(signer, "claim")

    # -- views ----------------------------------------------------------------

    def terms(self) -> TaskTerms:
        return TaskTerms(
            bounty=int(self._view("bounty")),
            stake=int(self._view("stake")),
            epochs=int(self._view("epochs")),
            min_intersection=int(self._view("minIntersection")),
            window=int(self._view("window")),
            slash_bps=int(self._view("slashBps")),
        )

    def owner(self) -> str:
        return str(self._view("owner"))

    def spec_hash(self) -> bytes:
        return bytes(self._view("specHash"))

    def stage(self) -> Stage:
        return Stage(int(self._view("stage")))

    def epoch(self) -> int:
        return int(self._view("epoch"))

    def owner_epochs(self) -> int:
        """Epochs the owner has committed."""
        return int(self._view("ownerEpochs"))

    def stage_at(self) -> int:
        """When the current stage (or training epoch) began: a timeout is possible a window after."""
        return int(self._view("stageAt"))

    def funded(self) -> bool:
        return bool(self._view("funded"))

    def intersection(self) -> int:
        return int(self._view("intersection"))

    def pool(self) -> int:
        return int(self._view("pool"))

    def burned(self) -> int:
        """Slashed stakes locked in the contract for good (no party was left to pay them to)."""
        return int(self._view("burned"))

    def parties(self) -> list[str]:
        return [str(a) for a in self._view("parties")]

    def party(self, account: str) -> PartyInfo:
        invited, joined, dropped, confirmed, epochs_done = self._view("partyInfo", account)
        return PartyInfo(bool(invited), bool(joined), bool(dropped), bool(confirmed), int(epochs_done))

    def owed(self, account: str) -> int:
        return int(self._view("owed", account))

    def encryption_key(self, account: str) -> bytes:
        """The X25519 public key `account` registered (32 zero bytes: none)."""
        return bytes(self._view("encryptionKey", account))


def deploy_task(
    chain: Chain, owner: LocalAccount, token: str, spec_hash: bytes, parties: Sequence[str], terms: TaskTerms
) -> tuple[VerticalTaskClient, int]:
    """Deploy a task contract owned by `owner`; returns its client and the deployment block."""
    address, block = deploy_contract(
        chain,
        owner,
        "VerticalTask",
        token,
        spec_hash,
        list(parties),
        terms.bounty,
        terms.stake,
        terms.epochs,
        terms.min_intersection,
        terms.window,
        terms.slash_bps,
    )
    return VerticalTaskClient(chain, address), block
