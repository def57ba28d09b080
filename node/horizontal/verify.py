"""Re-run a finalized round from public data: `fedchain audit verify`.

Refetch every revealed update of the round, check each against its on-chain
hash, re-run the spec's aggregation from the previous finalized model, and
compare the model hash and the scores with what the chain finalized. An update
the voters could not fetch (its sender partitioned, its node down) was left out
of the model they voted for, yet may be fetchable now: when the model does not
match, the round is re-run without the fewest such updates that give the chain's
model and scores, and the verdict names them (`left_out`): whether the voters
could not fetch them or withheld them, a reader cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import combinations

from ledger.client import FederationClient
from ledger.types import Phase
from node.core.codec import UpdateRejected, content_hash, encode
from node.errors import NodeError
from node.horizontal.exchange import (
    Cache,
    FetchedUpdate,
    collect_updates,
    evaluated_in,
    last_finalized_before,
    model_before,
)
from node.horizontal.outcome import Outcome, round_outcome
from node.horizontal.spec import NodeSpec
from node.privacy.sealing import SEAL_SLACK, Sealer
from node.store import Store, StoreError, fetch_verified
from node.store.verified import ContentMismatch

__all__ = ["Verdict", "rerun", "verify_round"]

MAX_LEFT_OUT_TRIES = 256  # re-runs tried to find the updates a round's voters could not fetch


@dataclass
class Verdict:
    round: int
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    # members whose update, fetchable now, the voters' model leaves out: unavailable to them when they voted
    # (a partition, a node down) or withheld by them; a reader cannot tell which, so it is said, not judged
    left_out: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.ok = False
        self.lines.append(f"MISMATCH: {text}")


def rerun(
    fed: FederationClient,
    store: Store,
    nspec: NodeSpec,
    r: int,
    from_block: int = 0,
    cache: Cache | None = None,
    sealer: Sealer | None = None,
) -> tuple[list[FetchedUpdate], Outcome]:
    """Round `r` re-run from public data (sealed: what `sealer` can open): its checked updates and what they
    give (model, scores, rejections)."""
    fetched = collect_updates(fed, store, nspec, r, from_block, cache=cache, sealer=sealer)  # first: sealed
    again = _rerunner(fed, store, nspec, r, from_block, sealer)
    return fetched, again(fetched)


def _rerunner(
    fed: FederationClient, store: Store, nspec: NodeSpec, r: int, from_block: int, sealer: Sealer | None
) -> Callable[[list[FetchedUpdate]], Outcome]:
    """What round `r`'s checked updates give, as a function of them (the base model fetched once)."""
    k, base = model_before(fed, store, nspec, r, sealer)  # updates name their base model's key
    j = last_finalized_before(fed, k)
    if sealer is not None and j > 0 and not sealer.knows(j):  # round k's updates name the key of the one before
        collect_updates(fed, store, nspec, k, from_block, sealer=sealer)
    previous = model_before(fed, store, nspec, k, sealer)[1] if k > 0 else None
    members = fed.members()[: fed.round(r).member_count]
    evaluated = evaluated_in(fed, nspec, r)
    return lambda fetched: round_outcome(nspec, base, fetched, members, previous, evaluated)


def _as_the_voters_saw_it(
    fetched: list[FetchedUpdate],
    again: Callable[[list[FetchedUpdate]], Outcome],
    target: bytes,
    scores: list[int],
) -> tuple[list[FetchedUpdate], Outcome, list[tuple[str, ...]]] | None:
    """The round re-run with the fewest of the updates usable now left out that gives the on-chain model hash
    and the finalized scores (at most a third of the usable updates, at most MAX_LEFT_OUT_TRIES re-runs):
    the first such re-run and every set of that size that fits (a median can give one model from different
    sets). None when no set fits."""
    usable = [f.member for f in fetched if f.update is not None]
    tries, fits = 0, []
    found: tuple[list[FetchedUpdate], Outcome] | None = None
    for size in range(1, len(usable) // 3 + 1):
        for left in combinations(usable, size):
            tries += 1
            if tries > MAX_LEFT_OUT_TRIES:
                break
            why = "left out by the round's voters (unavailable to them, or withheld; it can be fetched now)"
            changed = [replace(f, update=None, reason=why) if f.member in left else f for f in fetched]
            outcome = again(changed)
            if outcome.used and outcome.scores == scores and content_hash(encode(outcome.model)) == target:
                fits.append(left)
                found = found or (changed, outcome)
        if found is not None or tries > MAX_LEFT_OUT_TRIES:
            break
    return None if found is None else (*found, fits)


def verify_round(
    fed: FederationClient, store: Store, nspec: NodeSpec, r: int, from_block: int = 0, sealer: Sealer | None = None
) -> Verdict:
    """Round `r` re-run and compared with the chain. A sealed federation's round can be re-run only by a
    reader its updates are sealed to: a member of the round or an auditor of the spec (`sealer`)."""
    verdict = Verdict(r)
    info = fed.round(r)
    if info.phase != Phase.FINALIZED:
        verdict.fail(f"round {r} is {info.phase.name.lower()}, not finalized")
        return verdict
    if nspec.sealing is not None and sealer is None:
        verdict.fail(
            f"round {r}'s updates are sealed to its members and the spec's auditors: re-running it takes a "
            "member's keystore (--keystore) or an auditor's key file (--seal-key)"
        )
        return verdict
    try:
        fetched = collect_updates(fed, store, nspec, r, from_block, sealer=sealer)  # first: sealed
        again = _rerunner(fed, store, nspec, r, from_block, sealer)
    except NodeError as exc:  # a base model that cannot be had (sealed: not by this reader)
        verdict.fail(f"cannot re-run round {r}: {exc}")
        return verdict
    outcome = again(fetched)
    complete = not any(f.update is None and f.reason.startswith("unavailable") for f in fetched)
    if complete and outcome.used and content_hash(encode(outcome.model)) != info.model_hash:
        seen = _as_the_voters_saw_it(fetched, again, info.model_hash, fed.winning_proposal(r, from_block).scores)
        if seen is not None:
            fetched, outcome, fits = seen
            verdict.left_out = sorted({m for left in fits for m in left})
            which = " or ".join(" and ".join(left) for left in fits)
            verdict.lines.append(
                f"LEFT OUT: the voters' model leaves out the update of {which}, fetchable now: unavailable to "
                "them when they voted (a partition, a node down) or withheld by them; re-run without it"
            )
    for f in fetched:
        reason = outcome.rejected.get(f.member)
        status = "ok" if reason is None else f"rejected ({reason})"
        verdict.lines.append(f"update {f.member} {f.content_hash.hex()[:16]} {f.cid}: {status}")
        if f.update is None and f.reason.startswith("unavailable"):
            verdict.fail(f"cannot refetch {f.member}'s update {f.cid}, so the round cannot be re-run")
    if outcome.used == 0:
        verdict.fail("no update of the round could be used")
        return verdict
    model, scores = outcome.model, outcome.scores
    digest = content_hash(encode(model))
    if digest != info.model_hash:
        verdict.fail(f"re-aggregated model hash 0x{digest.hex()} != on-chain 0x{info.model_hash.hex()}")
    else:
        verdict.lines.append(f"model hash 0x{digest.hex()} matches the chain")
    winning = fed.winning_proposal(r, from_block)
    if scores != winning.scores:
        verdict.fail(f"recomputed scores {scores} != finalized {winning.scores}")
    else:
        verdict.lines.append("scores match the finalized proposal")
    if sealer is not None and digest == info.model_hash:
        sealer.remember(r, encode(model))  # the key of the model re-run: it must open the one stored
    opener = None if sealer is None else (sealer.model_opener(r, info.model_hash), SEAL_SLACK)
    try:
        fetch_verified(store, info.model_cid, info.model_hash, nspec.layout, nspec.max_update_bytes, None, opener)
    except ContentMismatch:
        verdict.fail(f"the model stored at {info.model_cid} does not hash to the on-chain model hash")
    except UpdateRejected as exc:
        verdict.fail(f"the model stored at {info.model_cid} is malformed: {exc}")
    except StoreError as exc:
        verdict.fail(f"the finalized model {info.model_cid} cannot be fetched: {exc}")
    return verdict
