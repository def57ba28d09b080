"""Updates and models between peers: every revealed update of a round, and the model before a round.

Everything here is fetched through `node.store.fetch_verified` (size cap, hash
check, strict decode): content from peers is untrusted.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ledger.client import FederationClient
from ledger.types import Phase
from node.core.codec import IntArray, UpdateRejected
from node.errors import NodeError
from node.horizontal.spec import NodeSpec
from node.store import Store, StoreError, fetch_verified
from node.store.verified import ContentMismatch

__all__ = ["FetchedUpdate", "collect_updates", "fetch_update", "model_before"]


@dataclass(frozen=True)
class FetchedUpdate:
    """One member's revealed update: decoded, or None with the reason it cannot be used."""

    member: str
    content_hash: bytes
    cid: str
    update: dict[str, IntArray] | None
    reason: str = ""  # why it was rejected


def fetch_update(store: Store, nspec: NodeSpec, member: str, expected: bytes, cid: str) -> FetchedUpdate:
    """Fetch and check one revealed update; a failure becomes a rejection, never an exception."""
    try:
        update = fetch_verified(store, cid, expected, nspec.layout, nspec.max_update_bytes)
    except StoreError as exc:
        return FetchedUpdate(member, expected, cid, None, f"unavailable: {exc}")
    except ContentMismatch as exc:
        return FetchedUpdate(member, expected, cid, None, str(exc))
    except UpdateRejected as exc:
        return FetchedUpdate(member, expected, cid, None, f"malformed: {exc}")
    return FetchedUpdate(member, expected, cid, update)


def collect_updates(
    fed: FederationClient, store: Store, nspec: NodeSpec, round_id: int, from_block: int = 0, workers: int = 8
) -> list[FetchedUpdate]:
    """Every revealed update of `round_id`, fetched concurrently and checked; sorted by member address.

    `from_block` must be at or before the previous round's reveals: an update whose
    content hash was revealed in the previous round is a replay, and rejected.
    """
    reveals = fed.reveals([round_id - 1, round_id] if round_id > 1 else [round_id], from_block)
    earlier = {rv.content_hash for rv in reveals if rv.round != round_id}
    revealed = sorted(
        ((rv.member, rv.content_hash, rv.cid) for rv in reveals if rv.round == round_id), key=lambda t: t[0].lower()
    )
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(revealed)))) as pool:
        fetched = list(pool.map(lambda t: fetch_update(store, nspec, *t), revealed))
    seen: dict[bytes, int] = {}
    for f in fetched:
        seen[f.content_hash] = seen.get(f.content_hash, 0) + 1

    def screened(f: FetchedUpdate) -> FetchedUpdate:
        if f.update is not None and seen[f.content_hash] > 1:
            return FetchedUpdate(f.member, f.content_hash, f.cid, None, "duplicate of another member's update")
        if f.update is not None and f.content_hash in earlier:
            reason = f"replays an update revealed in round {round_id - 1}"
            return FetchedUpdate(f.member, f.content_hash, f.cid, None, reason)
        return f

    return [screened(f) for f in fetched]


def model_before(fed: FederationClient, store: Store, nspec: NodeSpec, r: int) -> tuple[int, dict[str, IntArray]]:
    """The global model in force when round `r` opened and the round that made it (0: the initial model)."""
    for k in range(r - 1, 0, -1):
        info = fed.round(k)
        if info.phase == Phase.FINALIZED:
            try:
                return k, fetch_verified(store, info.model_cid, info.model_hash, nspec.layout, nspec.max_update_bytes)
            except StoreError as exc:
                raise NodeError(f"cannot fetch round {k}'s model {info.model_cid}: {exc}") from exc
            except ContentMismatch as exc:
                raise NodeError(f"round {k}'s model at {info.model_cid} does not match its on-chain hash") from exc
            except UpdateRejected as exc:
                raise NodeError(f"round {k}'s model is malformed: {exc}") from exc
    return 0, nspec.initial_model()
