"""The audit trail, rebuilt from the Federation contract's events alone.

Nothing here reads contract storage: every field comes from a log, so anyone
with chain access gets the same answer, and a storage bug cannot hide in it.
The JSON form (`schema: fedchain.audit/1`) is stable: fields are only ever
added, never renamed or removed; amounts are decimal strings of token base
units (18 decimals), hashes 0x-prefixed hex.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils import event_abi_to_log_topic
from web3._utils.events import get_event_data

from .client import FederationClient
from .errors import LedgerError
from .types import FailReason, Phase

__all__ = ["SCHEMA", "AuditTrail", "RoundRecord", "member_rewards", "read_audit"]

SCHEMA = "fedchain.audit/1"
_FAIL_NAMES = {r: r.name.lower().replace("_", "-") for r in FailReason}


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


@dataclass
class RoundRecord:
    """One round as the events tell it."""

    round: int
    status: str = "open"
    phase: str = "COMMIT"
    fail_reason: str | None = None
    member_count: int = 0
    eligible: int = 0
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] | None = None
    commits: list[dict[str, Any]] = field(default_factory=list)
    reveals: list[dict[str, Any]] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)
    winner: str | None = None
    model_hash: str | None = None
    model_cid: str | None = None
    rewards: list[dict[str, Any]] = field(default_factory=list)
    slashes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "status": self.status,
            "phase": self.phase,
            "fail_reason": self.fail_reason,
            "member_count": self.member_count,
            "eligible": self.eligible,
            "opened": self.opened,
            "closed": self.closed,
            "commits": self.commits,
            "reveals": self.reveals,
            "proposals": self.proposals,
            "votes": self.votes,
            "winner": self.winner,
            "model_hash": self.model_hash,
            "model_cid": self.model_cid,
            "rewards": self.rewards,
            "reward_total": str(sum(int(r["amount"]) for r in self.rewards)),
            "slashes": self.slashes,
            "slashed_total": str(sum(int(s["amount"]) for s in self.slashes)),
        }


@dataclass
class AuditTrail:
    """Every round and member of a federation, from its events."""

    federation: str
    chain_id: int
    members: list[str]
    rounds: dict[int, RoundRecord]
    claims: list[dict[str, Any]]
    head_block: int

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "federation": self.federation,
            "chain_id": self.chain_id,
            "head_block": self.head_block,
            "members": self.members,
            "rounds": [self.rounds[r].to_json() for r in sorted(self.rounds)],
            "claims": self.claims,
        }


class _Reader:
    def __init__(self, client: FederationClient) -> None:
        self.client = client
        self.w3 = client.chain.w3
        self.by_topic = {
            event_abi_to_log_topic(item): item  # type: ignore[arg-type]
            for item in client.contract.abi
            if item["type"] == "event"
        }
        self._times: dict[int, int] = {}

    def when(self, log: Any) -> dict[str, int]:
        block = int(log["blockNumber"])
        if block not in self._times:
            self._times[block] = int(self.w3.eth.get_block(block)["timestamp"])
        return {"block": block, "timestamp": self._times[block]}

    def events(self, from_block: int) -> list[tuple[str, dict[str, Any], Any]]:
        logs = self.client.chain.logs(self.client.address, from_block)
        out = []
        for log in logs:
            abi = self.by_topic.get(bytes(log["topics"][0]))
            if abi is None:
                continue
            data = get_event_data(self.w3.codec, abi, log)  # type: ignore[arg-type]
            out.append((str(data["event"]), dict(data["args"]), log))
        return out


def read_audit(client: FederationClient, from_block: int = 0) -> AuditTrail:
    """Rebuild the audit trail of `client`'s federation from its logs."""
    reader = _Reader(client)
    members: list[str] = []
    rounds: dict[int, RoundRecord] = {}
    claims: list[dict[str, Any]] = []
    for name, args, log in reader.events(from_block):
        when = reader.when(log)
        tx = _hex(log["transactionHash"])
        if name == "MemberJoined":
            if int(args["index"]) == len(members):
                members.append(str(args["member"]))
            continue
        if name == "Claimed":
            claims.append({"member": str(args["member"]), "amount": str(args["amount"]), **when, "tx": tx})
            continue
        if "round" not in args:
            continue
        rec = rounds.setdefault(int(args["round"]), RoundRecord(int(args["round"])))
        _apply(rec, name, args, {**when, "tx": tx}, members)
    head = int(client.chain.w3.eth.block_number)
    return AuditTrail(client.address, client.chain.chain_id, members, rounds, claims, head)


def _apply(rec: RoundRecord, name: str, args: dict[str, Any], when: dict[str, Any], members: list[str]) -> None:
    stamp = {"block": when["block"], "timestamp": when["timestamp"]}
    if name == "RoundOpened":
        rec.member_count, rec.eligible, rec.opened = int(args["memberCount"]), int(args["eligible"]), stamp
    elif name == "PhaseChanged":
        rec.phase = Phase(args["phase"]).name
    elif name == "Committed":
        rec.commits.append({"member": str(args["member"]), "commitment": _hex(args["commitment"]), **when})
    elif name == "PrivacySpent":  # logged right after its commit: the member's own statement, in thousandths
        for c in rec.commits:
            if c["member"] == str(args["member"]):
                c["epsilon"] = int(args["epsilonMilli"]) / 1000
    elif name == "Revealed":
        rec.reveals.append(
            {"member": str(args["member"]), "content_hash": _hex(args["contentHash"]), "cid": args["cid"], **when}
        )
    elif name == "Proposed":
        # Logged by a proposal's first full vote, and again by the winner's finalization (votes that
        # ride in commits name the id only, so the winner's votes may all come before it is logged).
        pid = _hex(args["proposal"])
        if any(p["proposal"] == pid for p in rec.proposals):
            return
        scores = {members[i]: int(s) for i, s in enumerate(args["scores"]) if i < len(members)}
        rec.proposals.append(
            {
                "proposal": pid,
                "model_hash": _hex(args["modelHash"]),
                "model_cid": args["modelCid"],
                "scores": scores,
                "votes": sum(v["proposal"] == pid for v in rec.votes),
                **when,
            }
        )
    elif name == "Voted":
        pid = _hex(args["proposal"])
        rec.votes.append({"member": str(args["member"]), "proposal": pid, **when})
        for p in rec.proposals:
            if p["proposal"] == pid:
                p["votes"] = int(args["votes"])
    elif name == "RoundFinalized":
        rec.status, rec.phase, rec.closed = "finalized", Phase.FINALIZED.name, stamp
        rec.winner, rec.model_hash, rec.model_cid = _hex(args["proposal"]), _hex(args["modelHash"]), args["modelCid"]
    elif name == "RoundFailed":
        rec.status, rec.phase, rec.closed = "failed", Phase.FAILED.name, stamp
        rec.fail_reason = _FAIL_NAMES[FailReason(args["reason"])]
    elif name == "RewardCredited":
        rec.rewards.append({"member": str(args["member"]), "amount": str(args["amount"]), "score": int(args["score"])})
    elif name == "Slashed":
        rec.slashes.append({"member": str(args["member"]), "amount": str(args["amount"])})


def member_rewards(client: FederationClient, who: str, from_block: int = 0) -> dict[str, Any]:
    """A member's earned, claimed, unclaimed and slashed amounts, round by round, and the finalized
    rounds it voted in and was paid nothing for (`unpaid_rounds`: its score was 0).

    The contract's storage is checked against its `RewardCredited` events: if they
    disagree, `LedgerError` says so instead of printing either.
    """
    totals, info = client.rewards(who), client.member(who)
    trail = read_audit(client, from_block)
    rows, unpaid = [], []
    for r in sorted(trail.rounds):
        rec = trail.rounds[r]
        reward = next((x for x in rec.rewards if x["member"] == who), None)
        slash = next((x for x in rec.slashes if x["member"] == who), None)
        if rec.status == "finalized" and reward is None and any(x["member"] == who for x in rec.votes):
            unpaid.append(r)  # it took part to the end, the round finalized, and its score was 0
        if reward or slash:
            rows.append(
                {
                    "round": r,
                    "score": reward["score"] if reward else 0,
                    "reward": reward["amount"] if reward else "0",
                    "slashed": slash["amount"] if slash else "0",
                }
            )
    earned = totals["credited"] + totals["claimed"]
    logged = sum(int(x["reward"]) for x in rows)
    if logged != earned:
        raise LedgerError(f"the contract says {who} earned {earned}, its RewardCredited events add up to {logged}")
    return {
        "member": who,
        "active": info.active,
        "stake": str(info.stake),
        "earned": str(earned),
        "claimed": str(totals["claimed"]),
        "unclaimed": str(totals["credited"]),
        "slashed": str(totals["slashed"]),
        "rounds": rows,
        "unpaid_rounds": unpaid,
    }
