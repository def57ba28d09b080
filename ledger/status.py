"""A federation at a glance (`fedchain status`): the open round and its clock, the members, the latest models.

Read from the chain alone: the round and member records from contract storage
(what the next transaction will see: a window that has run out shows as
`timed out`), the rounds taken part in, the finalized models and the failed
rounds from the audit trail's events (`ledger.audit`). The JSON form
(`schema: fedchain.status/1`) only ever gains fields; amounts are decimal
strings of token base units (18 decimals).
"""

from __future__ import annotations

from typing import Any

from .audit import read_audit
from .client import FederationClient
from .types import MemberStatus, Phase

__all__ = ["SCHEMA", "federation_status"]

SCHEMA = "fedchain.status/1"
_WINDOW = {Phase.COMMIT: "commit_window", Phase.REVEAL: "reveal_window", Phase.VOTE: "vote_window"}
LAST_MODELS = 5


def federation_status(client: FederationClient, from_block: int = 0) -> dict[str, Any]:
    """The status document of `client`'s federation (events read from `from_block`, its deployment's)."""
    with client.chain.pinned():  # every read at one block
        return _status(client, from_block)


def _status(client: FederationClient, from_block: int) -> dict[str, Any]:
    trail = read_audit(client, from_block)
    cfg, now = client.config(), client.chain.now()
    r = client.current_round()
    current: dict[str, Any] | None = None
    if r > 0:
        info, effective = client.round(r), client.phase(r)
        window = _WINDOW.get(info.phase)
        left = None if window is None else info.phase_at + cfg[window] - now
        current = {
            "round": r,
            "phase": effective.name.lower(),
            "stored_phase": info.phase.name.lower(),
            # the stored phase's window: None once the round moved on (everyone acted early, or it timed out)
            "seconds_left": max(0, left) if left is not None and effective == info.phase else None,
            "timed_out": effective != info.phase and left is not None and left <= 0,
            "eligible": info.eligible,
            "commits": info.commits,
            "reveals": info.reveals,
            "votes": info.votes,
        }
    took_part: dict[str, int] = {}
    for rec in trail.rounds.values():
        for reveal in rec.reveals:
            took_part[reveal["member"]] = took_part.get(reveal["member"], 0) + 1
    members = []
    for m in trail.members:
        record, rewards = client.member(m), client.rewards(m)
        members.append(
            {
                "address": m,
                "active": record.active,
                "stake": str(record.stake),
                "this_round": MemberStatus(client.status(r, m)).name.lower() if r > 0 else None,
                "rounds_taken_part": took_part.get(m, 0),
                "earned": str(rewards["credited"] + rewards["claimed"]),
                "unclaimed": str(rewards["credited"]),
                "slashed": str(rewards["slashed"]),
            }
        )
    closed = [trail.rounds[k] for k in sorted(trail.rounds) if trail.rounds[k].status in ("finalized", "failed")]
    finalized = [rec for rec in closed if rec.status == "finalized"]
    return {
        "schema": SCHEMA,
        "federation": client.address,
        "chain_id": client.chain.chain_id,
        "head_block": trail.head_block,
        "chain_time": now,
        "current": current,
        "members": members,
        "finalized_rounds": len(finalized),
        "latest_models": [
            {"round": rec.round, "model_hash": rec.model_hash, "model_cid": rec.model_cid}
            for rec in reversed(finalized[-LAST_MODELS:])
        ],
        "failed": [{"round": rec.round, "reason": rec.fail_reason} for rec in closed if rec.status == "failed"],
    }
