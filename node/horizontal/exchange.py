"""Updates and models between peers: every revealed update of a round, and the model before a round.

Everything here is fetched through `node.store.fetch_verified` (size cap, hash
check, strict decode): content from peers is untrusted.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from ledger.client import FederationClient
from ledger.types import Phase
from node.core.codec import IntArray, UpdateRejected, content_hash, encode
from node.errors import NodeError
from node.horizontal.spec import EVALUATION, NodeSpec
from node.privacy.sealing import SEAL_SLACK, Sealer
from node.store import Store, StoreError, StoreUnreachable, fetch_verified
from node.store.verified import ContentMismatch, Opener

__all__ = [
    "Cache",
    "FetchedUpdate",
    "collect_updates",
    "evaluated_in",
    "fetch_model",
    "fetch_update",
    "last_finalized_before",
    "model_before",
    "prefetch",
]


@dataclass(frozen=True)
class FetchedUpdate:
    """One member's revealed content: its update decoded (None with the reason it cannot be used) and,
    when the federation scores by evaluation, its evaluation of the previous round (None if absent)."""

    member: str
    content_hash: bytes
    cid: str
    update: dict[str, IntArray] | None
    reason: str = ""  # why it was rejected
    evaluation: IntArray | None = None
    # What identifies the update itself (duplicates and replays): the content hash, or, when the content
    # carries an evaluation too, the hash of the update part alone (a replay may come with a new evaluation).
    update_hash: bytes = b""

    def __post_init__(self) -> None:
        if not self.update_hash:
            object.__setattr__(self, "update_hash", self.content_hash)


Revealed = tuple[str, bytes, str]  # member, content hash, CID
PREFETCH_TIMEOUT = 3.0  # seconds a prefetch waits for one content (the round's close waits the store's own)
# (round, member, content hash) -> what it gave. The round is in the key: a content's layout (the length
# of its evaluation) depends on its round, so the same bytes revealed in two rounds are checked twice.
Cache = dict[tuple[int, str, bytes], FetchedUpdate]


def fetch_update(
    store: Store,
    nspec: NodeSpec,
    member: str,
    expected: bytes,
    cid: str,
    evaluated: int = 0,
    timeout: float | None = None,
    opener: Opener | None = None,
) -> FetchedUpdate:
    """Fetch and check one member's content (its update and, if scoring by evaluation, its vector
    evaluating `evaluated` members), opened by `opener` when sealed; a failure becomes a rejection, never
    an exception."""
    layout = nspec.content_layout(evaluated)
    sealed = None if opener is None else (opener, SEAL_SLACK)
    try:
        content = fetch_verified(store, cid, expected, layout, nspec.content_bytes(evaluated), timeout, sealed)
    except StoreUnreachable:
        raise  # our own node is down: wait it out (the daemon retries the step), blame no sender
    except StoreError as exc:
        return FetchedUpdate(member, expected, cid, None, f"unavailable: {exc}")
    except ContentMismatch as exc:
        return FetchedUpdate(member, expected, cid, None, str(exc))
    except UpdateRejected as exc:
        return FetchedUpdate(member, expected, cid, None, f"malformed: {exc}")
    if EVALUATION not in content:
        return FetchedUpdate(member, expected, cid, content)
    evaluation = content.pop(EVALUATION)
    return FetchedUpdate(member, expected, cid, content, "", evaluation, content_hash(encode(content)))


def evaluated_in(fed: FederationClient, nspec: NodeSpec, round_id: int) -> int:
    """How many members round `round_id`'s contents evaluate: the previous round's, when scoring by evaluation."""
    return fed.round(round_id - 1).member_count if nspec.evaluates and round_id > 1 else 0


def _fetch_all(
    store: Store,
    nspec: NodeSpec,
    round_id: int,
    revealed: list[Revealed],
    evaluated: int,
    workers: int,
    cache: Cache | None,
    timeout: float | None = None,
    sealer: Sealer | None = None,
) -> list[FetchedUpdate]:
    """Round `round_id`'s revealed contents, from `cache` when it holds them; what is fetched goes into it
    (outages aside), and rounds before the previous one leave it. Sealed: opened by the sealer."""
    known: Cache = {} if cache is None else cache
    missing = [t for t in revealed if (round_id, t[0], t[1]) not in known]
    required = sealer.required(round_id) if sealer and missing else {}

    def one(t: Revealed) -> FetchedUpdate:
        opener = sealer.update_opener(t[0], round_id, required) if sealer else None
        return fetch_update(store, nspec, t[0], t[1], t[2], evaluated, timeout, opener)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(missing)))) as pool:
        fetched = list(pool.map(one, missing))
    fresh = {(round_id, t[0], t[1]): f for t, f in zip(missing, fetched, strict=True)}
    out = [fresh.get((round_id, m, h)) or known[(round_id, m, h)] for m, h, _ in revealed]
    if cache is not None:
        cache.update({k: f for k, f in fresh.items() if not f.reason.startswith("unavailable")})
        for key in [k for k in cache if k[0] < round_id - 1]:
            del cache[key]
    return out


def collect_updates(
    fed: FederationClient,
    store: Store,
    nspec: NodeSpec,
    round_id: int,
    from_block: int = 0,
    workers: int = 8,
    cache: Cache | None = None,
    sealer: Sealer | None = None,
    timeout: float | None = None,
) -> list[FetchedUpdate]:
    """Every revealed update of `round_id`, fetched concurrently and checked (opened by `sealer` in a sealed
    federation); sorted by member address. `timeout`: seconds one content may take (the store's own if None).

    `from_block` must be at or before the previous round's reveals: an update revealed
    in the previous round is a replay, and rejected. When scoring by evaluation that
    takes the previous round's contents too (their update part: a replay may carry a
    new evaluation); `cache` keeps what was fetched for the next call.
    """
    reveals = fed.reveals([round_id - 1, round_id] if round_id > 1 else [round_id], from_block)
    now = sorted(
        ((rv.member, rv.content_hash, rv.cid) for rv in reveals if rv.round == round_id), key=lambda t: t[0].lower()
    )
    evaluated = evaluated_in(fed, nspec, round_id)
    if timeout is not None:  # a deadline to meet: every content at once, so the whole fetch takes one timeout
        workers = max(workers, len(now))
    fetched = _fetch_all(store, nspec, round_id, now, evaluated, workers, cache, timeout, sealer)
    if nspec.evaluates and round_id > 1:
        before = [(rv.member, rv.content_hash, rv.cid) for rv in reveals if rv.round != round_id]
        evaluated = evaluated_in(fed, nspec, round_id - 1)
        old = _fetch_all(store, nspec, round_id - 1, before, evaluated, workers, cache, timeout, sealer)
        earlier = {f.update_hash for f in old if f.update is not None}
    else:
        earlier = {rv.content_hash for rv in reveals if rv.round != round_id}
    seen: dict[bytes, int] = {}
    for f in fetched:
        seen[f.update_hash] = seen.get(f.update_hash, 0) + 1

    def screened(f: FetchedUpdate) -> FetchedUpdate:
        if f.update is not None and seen[f.update_hash] > 1:
            reason = "duplicate of another member's update"
            return replace(f, update=None, reason=reason)
        if f.update is not None and f.update_hash in earlier:
            return replace(f, update=None, reason=f"replays an update revealed in round {round_id - 1}")
        return f

    return [screened(f) for f in fetched]


def prefetch(
    fed: FederationClient,
    store: Store,
    nspec: NodeSpec,
    round_id: int,
    from_block: int,
    cache: Cache,
    tried: set[tuple[int, str, bytes]],
    workers: int = 8,
    sealer: Sealer | None = None,
) -> None:
    """Fetch and check what round `round_id` (in its reveal phase) has revealed so far into `cache`, so
    `collect_updates` finds it there when the round closes.

    Each content is tried once here (`tried` remembers it), for at most PREFETCH_TIMEOUT
    seconds: one that cannot be had is left to `collect_updates`, so a member revealing what
    it does not serve costs a waiting peer at most that much more.
    """
    for key in [k for k in tried if k[0] < round_id]:
        tried.discard(key)
    revealed = [(rv.member, rv.content_hash, rv.cid) for rv in fed.reveals([round_id], from_block)]
    new = [t for t in revealed if (round_id, t[0], t[1]) not in tried]
    if new:
        tried.update((round_id, t[0], t[1]) for t in new)
        evaluated = evaluated_in(fed, nspec, round_id)
        _fetch_all(store, nspec, round_id, new, evaluated, workers, cache, PREFETCH_TIMEOUT, sealer)


def model_before(
    fed: FederationClient, store: Store, nspec: NodeSpec, r: int, sealer: Sealer | None = None
) -> tuple[int, dict[str, IntArray]]:
    """The global model in force when round `r` opened and the round that made it (0: the initial model)."""
    k = last_finalized_before(fed, r)
    if k == 0:
        return 0, nspec.initial_model()
    return k, fetch_model(fed, store, nspec, k, sealer)


def last_finalized_before(fed: FederationClient, r: int) -> int:
    """The newest round before `r` that finalized (0: none)."""
    return next((k for k in range(r - 1, 0, -1) if fed.round(k).phase == Phase.FINALIZED), 0)


def fetch_model(
    fed: FederationClient, store: Store, nspec: NodeSpec, k: int, sealer: Sealer | None = None
) -> dict[str, IntArray]:
    """Finalized round `k`'s model, fetched, opened (sealed) and checked against its hash; NodeError if not."""
    info = fed.round(k)
    opener = None if sealer is None else (sealer.model_opener(k, info.model_hash), SEAL_SLACK)
    try:
        return fetch_verified(
            store, info.model_cid, info.model_hash, nspec.layout, nspec.max_update_bytes, None, opener
        )
    except StoreError as exc:
        raise NodeError(f"cannot fetch round {k}'s model {info.model_cid}: {exc}") from exc
    except ContentMismatch as exc:
        raise NodeError(f"round {k}'s model at {info.model_cid} does not match its on-chain hash") from exc
    except UpdateRejected as exc:
        raise NodeError(f"round {k}'s model is malformed: {exc}") from exc
