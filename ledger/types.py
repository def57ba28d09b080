"""Plain values the ledger hands out: phases, rounds, members, accounting."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Accounting", "FailReason", "MemberInfo", "MemberStatus", "Phase", "Proposal", "RoundInfo"]


class Phase(IntEnum):
    """A round's phase (mirrors IFederation.Phase)."""

    NONE = 0
    COMMIT = 1
    REVEAL = 2
    VOTE = 3
    FINALIZED = 4
    FAILED = 5

    @property
    def closed(self) -> bool:
        """Finalized or failed: a closed round never changes again."""
        return self in (Phase.FINALIZED, Phase.FAILED)


class FailReason(IntEnum):
    """Why a round failed (mirrors IFederation.FailReason)."""

    TOO_FEW_COMMITS = 0
    TOO_FEW_REVEALS = 1
    NO_QUORUM = 2
    NOT_FINALIZED = 3
    PREVIOUS_FAILED = 4


class MemberStatus(IntEnum):
    """A member's state in one round (Federation.statusOf)."""

    NONE = 0
    COMMITTED = 1
    REVEALED = 2
    VOTED = 3
    SLASHED = 4


@dataclass(frozen=True)
class RoundInfo:
    """A round as stored on chain."""

    round: int
    phase: Phase
    opened_at: int
    phase_at: int
    member_count: int
    eligible: int
    commits: int
    reveals: int
    votes: int
    winner: bytes
    model_hash: bytes
    model_cid: str
    chained: bool = False  # opened when the round before entered its vote: fails if that round fails


@dataclass(frozen=True)
class Proposal:
    """A vote's content: the aggregated model and one score per member (join order)."""

    model_hash: bytes
    model_cid: str
    scores: list[int]


@dataclass(frozen=True)
class MemberInfo:
    """A member's record on chain."""

    address: str
    active: bool
    index: int
    stake: int
    joined_round: int


@dataclass(frozen=True)
class StepView:
    """What a peer reads before each step, in one call (`stepView`)."""

    round: int  # the open round (0 before the first)
    live: Phase  # its phase once pending timeouts apply
    stored: Phase  # its phase as stored
    finalized: int  # the newest finalized round
    status: MemberStatus  # the member's state in the open round
    voting: bool = False  # the round before is in its vote
    prev_status: MemberStatus = MemberStatus.NONE  # the member's state in the round before (while voting)
    prev_finalizable: bool = False  # the round before can be finalized now
    due: bool = False  # a timeout is pending (an `advance` applies it)


@dataclass(frozen=True)
class Accounting:
    """Where the federation's tokens are. `held` is the contract's token balance."""

    staked: int
    pool: int
    unclaimed: int
    claimed: int
    slashed: int
    held: int


@dataclass(frozen=True)
class Reveal:
    """A `Revealed` event: `member` showed what it committed in `round`."""

    round: int
    member: str
    content_hash: bytes
    cid: str
    block: int
