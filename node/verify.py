"""Re-run a finalized round from public data: `fedchain audit verify`.

Refetch every revealed update of the round, check each against its on-chain
hash, re-run the spec's aggregation from the previous finalized model, and
compare the model hash and the scores with what the chain finalized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.client import FederationClient
from ledger.types import Phase

from .codec import IntArray, UpdateRejected, content_hash, decode, encode
from .errors import NodeError
from .nodespec import NodeSpec
from .peer import collect_updates, round_outcome
from .store import Store, StoreError

__all__ = ["Verdict", "verify_round"]


@dataclass
class Verdict:
    round: int
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.ok = False
        self.lines.append(f"MISMATCH: {text}")


def _model_at(fed: FederationClient, store: Store, nspec: NodeSpec, r: int) -> dict[str, IntArray]:
    """The global model in force when round `r` opened (the newest finalized before it, or the initial one)."""
    for k in range(r - 1, 0, -1):
        info = fed.round(k)
        if info.phase == Phase.FINALIZED:
            try:
                data = store.get(info.model_cid, nspec.max_update_bytes)
            except StoreError as exc:
                raise NodeError(f"cannot fetch round {k}'s model {info.model_cid}: {exc}") from exc
            if content_hash(data) != info.model_hash:
                raise NodeError(f"round {k}'s model at {info.model_cid} does not match its on-chain hash")
            try:
                return decode(data, nspec.layout)
            except UpdateRejected as exc:
                raise NodeError(f"round {k}'s model is malformed: {exc}") from exc
    return nspec.initial_model()


def verify_round(fed: FederationClient, store: Store, nspec: NodeSpec, r: int, from_block: int = 0) -> Verdict:
    verdict = Verdict(r)
    info = fed.round(r)
    if info.phase != Phase.FINALIZED:
        verdict.fail(f"round {r} is {info.phase.name.lower()}, not finalized")
        return verdict
    base = _model_at(fed, store, nspec, r)
    fetched = collect_updates(fed, store, nspec, r, from_block)
    for f in fetched:
        status = "ok" if f.update is not None else f"rejected ({f.reason})"
        verdict.lines.append(f"update {f.member} {f.content_hash.hex()[:16]} {f.cid}: {status}")
        if f.update is None and f.reason.startswith("unavailable"):
            verdict.fail(f"cannot refetch {f.member}'s update {f.cid}, so the round cannot be re-run")
    if all(f.update is None for f in fetched):
        verdict.fail("no update of the round could be used")
        return verdict
    model, scores = round_outcome(nspec, base, fetched, fed.members()[: info.member_count])
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
    try:
        stored = store.get(info.model_cid, nspec.max_update_bytes)
        if content_hash(stored) != info.model_hash:
            verdict.fail(f"the model stored at {info.model_cid} does not hash to the on-chain model hash")
    except StoreError as exc:
        verdict.fail(f"the finalized model {info.model_cid} cannot be fetched: {exc}")
    return verdict
