"""One peer's part in the rounds: a step function driven only by what the chain says.

`Peer.step()` looks at the open round and does the one thing due, if any:
adopt a newly finalized model, train and commit, reveal, fetch + verify +
aggregate + vote, or finalize. Everything it must not forget across a restart
(above all the salt of a commitment) is written atomically to its state file
*before* the transaction that depends on it, so a crash never loses a reveal
and a restart never commits twice.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount

from ledger.client import FederationClient
from ledger.errors import ContractRevert
from ledger.types import MemberStatus, Phase

from .codec import MAX_ABS, IntArray, UpdateRejected, content_hash, decode, encode
from .data import Dataset
from .errors import NodeError
from .model import train
from .nodespec import NodeSpec, model_hash
from .scoring import contribution_scores
from .store import Store, StoreError

__all__ = ["FetchedUpdate", "Peer", "PeerState", "Timings", "collect_updates", "model_before", "round_outcome"]


class Timings(dict[str, float]):
    """Seconds spent per kind of work, added up: `with timings("train"): ...`."""

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[key] = self.get(key, 0.0) + time.perf_counter() - start


@dataclass
class PeerState:
    """What a peer must remember across restarts; saved as JSON, atomically."""

    path: Path | None = None
    model_round: int = 0  # the finalized round whose model this peer last adopted (0: the initial model)
    model_cid: str = ""
    commits: dict[str, dict[str, str]] = field(default_factory=dict)  # round -> hash, salt, cid
    round_blocks: dict[str, int] = field(default_factory=dict)  # round -> a block at or before its opening

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "model_round": self.model_round,
                    "model_cid": self.model_cid,
                    "commits": self.commits,
                    "round_blocks": self.round_blocks,
                },
                fh,
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path | None) -> PeerState:
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            blocks = {str(k): int(v) for k, v in data.get("round_blocks", {}).items()}
            return cls(path, int(data["model_round"]), str(data["model_cid"]), dict(data["commits"]), blocks)
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(f"peer state {path} is corrupt: {exc}") from exc


@dataclass
class FetchedUpdate:
    member: str
    content_hash: bytes
    cid: str
    update: dict[str, IntArray] | None
    reason: str = ""  # why it was rejected


def _fetch_one(store: Store, nspec: NodeSpec, member: str, expected: bytes, cid: str) -> FetchedUpdate:
    try:
        data = store.get(cid, nspec.max_update_bytes)
    except StoreError as exc:
        return FetchedUpdate(member, expected, cid, None, f"unavailable: {exc}")
    if content_hash(data) != expected:
        return FetchedUpdate(member, expected, cid, None, "content does not match its on-chain hash")
    try:
        return FetchedUpdate(member, expected, cid, decode(data, nspec.layout))
    except UpdateRejected as exc:
        return FetchedUpdate(member, expected, cid, None, f"malformed: {exc}")


def collect_updates(
    fed: FederationClient, store: Store, nspec: NodeSpec, round_id: int, from_block: int = 0, workers: int = 8
) -> list[FetchedUpdate]:
    """Every revealed update of `round_id`, fetched concurrently and checked; sorted by member address.

    `from_block` must be at or before the previous round's reveals: an update whose
    content hash was revealed in the previous round is a replay, and rejected.
    """
    logs = fed.contract.events.Revealed.get_logs(
        from_block=from_block, argument_filters={"round": [round_id - 1, round_id] if round_id > 1 else round_id}
    )
    earlier = {bytes(lg["args"]["contentHash"]) for lg in logs if lg["args"]["round"] != round_id}
    revealed = sorted(
        (
            (str(lg["args"]["member"]), bytes(lg["args"]["contentHash"]), str(lg["args"]["cid"]))
            for lg in logs
            if lg["args"]["round"] == round_id
        ),
        key=lambda t: t[0].lower(),
    )
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(revealed)))) as pool:
        fetched = list(pool.map(lambda t: _fetch_one(store, nspec, *t), revealed))
    seen: dict[bytes, int] = {}
    for f in fetched:
        seen[f.content_hash] = seen.get(f.content_hash, 0) + 1
    for f in fetched:
        if f.update is not None and seen[f.content_hash] > 1:
            f.update, f.reason = None, "duplicate of another member's update"
        elif f.update is not None and f.content_hash in earlier:
            f.update, f.reason = None, f"replays an update revealed in round {round_id - 1}"
    return fetched


def model_before(fed: FederationClient, store: Store, nspec: NodeSpec, r: int) -> tuple[int, dict[str, IntArray]]:
    """The global model in force when round `r` opened and the round that made it (0: the initial model)."""
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
                return k, decode(data, nspec.layout)
            except UpdateRejected as exc:
                raise NodeError(f"round {k}'s model is malformed: {exc}") from exc
    return 0, nspec.initial_model()


def round_outcome(
    nspec: NodeSpec,
    base: dict[str, IntArray],
    fetched: list[FetchedUpdate],
    members: list[str],
    previous: dict[str, IntArray] | None = None,
) -> tuple[dict[str, IntArray], list[int]]:
    """The new model and the score vector a round's checked updates give: what an honest peer votes for.

    `previous` is the global model before `base` (None if `base` is the initial model):
    an update equal to the last global step, `base - previous`, is public work copied,
    and is rejected. Scores are `node.scoring.contribution_scores` of the usable updates,
    placed at each member's index (join order); members without a usable update score 0.
    The peer and `fedchain audit verify` both call this, so a verifier re-runs exactly what peers ran.
    """
    if previous is not None:
        step = {k: base[k] - previous[k] for k in base}
        for f in fetched:
            if f.update is not None and all(np.array_equal(f.update[k], step[k]) for k in step):
                f.update, f.reason = None, "copies the last global step"
    good = [f.update for f in fetched if f.update is not None]
    if not good:
        return base, [0] * len(members)
    agg = nspec.aggregate(good)
    model = {k: np.clip(base[k] + agg[k], -MAX_ABS, MAX_ABS) for k in base}
    flat = [None if f.update is None else nspec.flatten(f.update) for f in fetched]
    by_member = dict(zip((f.member.lower() for f in fetched), contribution_scores(flat), strict=True))
    return model, [by_member.get(m.lower(), 0) for m in members]


class Peer:
    """A federation member: its key, data, store, and the chain client."""

    def __init__(
        self,
        name: str,
        account: LocalAccount,
        fed: FederationClient,
        store: Store,
        data: Dataset,
        nspec: NodeSpec,
        state: PeerState | None = None,
        from_block: int = 0,
        log: Callable[[str], None] | None = None,
        make_update: Callable[[Peer, dict[str, IntArray]], dict[str, IntArray]] | None = None,
    ) -> None:
        self.name, self.account, self.fed, self.store, self.data, self.nspec = name, account, fed, store, data, nspec
        self.state = state or PeerState()
        self.from_block = from_block
        self.log = log or (lambda _msg: None)
        self.make_update = make_update or Peer.trained_update
        self.params: dict[str, IntArray] = nspec.initial_model()
        self.loaded_round = 0  # the finalized round whose model is in `params` (0: the initial model)
        self.computed: dict[int, dict[str, IntArray]] = {}  # round -> the model this peer voted for
        self.last_round_id = 0
        self._previous: tuple[int, dict[str, IntArray]] | None = None  # (loaded_round, the model before it)
        # seconds spent in train, encode, publish, chain (transactions), fetch, aggregate, adopt
        self.timings = Timings()

    @property
    def address(self) -> str:
        return str(self.account.address)

    # -- the global model -----------------------------------------------------

    def adopt_latest(self) -> bool:
        """Load the newest finalized model (fetched by CID, checked against its hash)."""
        last = self.fed.last_finalized()
        if last == self.loaded_round:
            return False
        info = self.fed.round(last)
        try:
            with self.timings("adopt"):
                data = self.store.get(info.model_cid, self.nspec.max_update_bytes)
                if content_hash(data) != info.model_hash:
                    raise UpdateRejected("the model's bytes do not match its on-chain hash")
                self.params = decode(data, self.nspec.layout)
        except (StoreError, UpdateRejected) as exc:
            mine = self.computed.get(last)
            if mine is None or model_hash(mine) != info.model_hash:
                raise NodeError(f"cannot adopt round {last}'s model {info.model_cid}: {exc}") from exc
            self.params = mine  # the quorum's model is the one we computed ourselves
        self.loaded_round = last
        self.state.model_round, self.state.model_cid = last, info.model_cid
        self.state.save()
        self.computed = {k: v for k, v in self.computed.items() if k > last}
        self.log(f"adopted round {last}'s model {info.model_hash.hex()[:12]}")
        return True

    # -- one step ---------------------------------------------------------------

    def trained_update(self, base: dict[str, IntArray], data: Dataset | None = None) -> dict[str, IntArray]:
        """Train on local data (or `data`) from `base`; the update is the fixed-point difference."""
        cfg = self.nspec.training
        seed_cfg = type(cfg)(cfg.epochs, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.seed + self.last_round_id)
        trained = train(self.nspec.model, base, self.data if data is None else data, seed_cfg)
        return {k: np.clip(trained[k] - base[k], -MAX_ABS, MAX_ABS) for k in base}

    def step(self) -> str:
        """Do the one action the chain state calls for; returns what was done ('' for nothing)."""
        r = self.fed.current_round()
        if r == 0:
            return ""
        self.last_round_id = r
        phase = self.fed.phase(r)
        self._note_round_start(r, phase)
        stored = self.fed.round(r).phase
        if phase != stored:  # a timeout is pending: apply it
            with self.timings("chain"):
                self.fed.advance(self.account)
            return f"advanced round {r} past its {stored.name.lower()} window"
        if phase == Phase.COMMIT:
            self.adopt_latest()
        status = self.fed.status(r, self.address)
        try:
            if phase == Phase.COMMIT and status == MemberStatus.NONE:
                return self._commit(r)
            if phase == Phase.REVEAL and status == MemberStatus.COMMITTED and str(r) in self.state.commits:
                return self._reveal(r)
            if phase == Phase.VOTE and status == MemberStatus.REVEALED:
                return self._vote(r)
            if phase == Phase.VOTE and self.fed.round(r).winner != bytes(32):
                with self.timings("chain"):
                    self.fed.finalize(self.account, r, from_block=self._scan_from(r))
                self.adopt_latest()
                return f"finalized round {r}"
        except ContractRevert as exc:
            if exc.error_name in ("RoundNotInPhase", "NotCurrentRound", "AlreadyVoted", "AlreadyCommitted"):
                return ""  # another peer moved the round first; look again
            raise
        return ""

    def _previous_model(self) -> dict[str, IntArray] | None:
        """The global model before the one this peer holds (None when it holds the initial model)."""
        if self.loaded_round == 0:
            return None
        if self._previous is None or self._previous[0] != self.loaded_round:
            self._previous = (self.loaded_round, model_before(self.fed, self.store, self.nspec, self.loaded_round)[1])
        return self._previous[1]

    def _scan_from(self, r: int) -> int:
        """A block at or before the previous round's reveals (what `collect_updates` needs)."""
        blocks = self.state.round_blocks
        return blocks.get(str(max(1, r - 1)), self.from_block)

    def _note_round_start(self, r: int, phase: Phase) -> None:
        """Remember a block before round r's reveals, so log scans need not start at deployment.

        Seen in its commit phase, round r has no reveal yet: the current block will do.
        Seen later (a restart), fall back to the previous round's block, or the deployment's.
        """
        if str(r) in self.state.round_blocks:
            return
        if phase == Phase.COMMIT:
            start = int(self.fed.chain.w3.eth.block_number)
        else:
            start = self.state.round_blocks.get(str(r - 1), self.from_block)
        prev = self.state.round_blocks.get(str(r - 1))
        self.state.round_blocks = {str(r): start} if prev is None else {str(r - 1): prev, str(r): start}

    def _commit(self, r: int) -> str:
        me = self.fed.member(self.address)
        if me.joined_round >= r:
            return ""
        stake = self.fed.config()["stake"]
        if me.stake < stake:  # slashed earlier: top the stake up, or sit the round out
            if self.fed.token.balance_of(self.address) < stake - me.stake:
                self.log(f"round {r}: stake {me.stake} is short of {stake} and the balance cannot cover it")
                return ""
            with self.timings("chain"):
                self.fed.add_stake(self.account, stake - me.stake)
            return f"topped the stake up by {stake - me.stake}"
        with self.timings("train"):
            update = self.make_update(self, self.params)
        with self.timings("encode"):
            data = encode(update)
            digest, salt = content_hash(data), secrets.token_bytes(32)
        with self.timings("publish"):
            cid = self.store.put(data)
        self.state.commits[str(r)] = {"hash": digest.hex(), "salt": salt.hex(), "cid": cid}
        self.state.save()  # before the commit: a crash after it must still be able to reveal
        with self.timings("chain"):
            self.fed.commit(self.account, r, self.fed.commitment_for(r, self.address, digest, salt))
        return f"committed round {r} update {digest.hex()[:12]} ({len(data)} bytes at {cid})"

    def _reveal(self, r: int) -> str:
        c = self.state.commits[str(r)]
        with self.timings("chain"):
            self.fed.reveal(self.account, r, bytes.fromhex(c["hash"]), c["cid"], bytes.fromhex(c["salt"]))
        return f"revealed round {r}"

    def _vote(self, r: int) -> str:
        with self.timings("fetch"):
            fetched = collect_updates(self.fed, self.store, self.nspec, r, self._scan_from(r))
            members = self.fed.members()[: self.fed.round(r).member_count]
            previous = self._previous_model()
        with self.timings("aggregate"):
            new, scores = round_outcome(self.nspec, self.params, fetched, members, previous)
        good = [f for f in fetched if f.update is not None]
        for f in fetched:
            if f.update is None:
                self.log(f"round {r}: rejected {f.member}'s update: {f.reason}")
        if not good:
            return ""
        with self.timings("encode"):
            model_bytes = encode(new)
            digest = content_hash(model_bytes)
        with self.timings("publish"):
            cid = self.store.put(model_bytes)
        self.computed[r] = new
        with self.timings("chain"):
            self.fed.vote(self.account, r, digest, cid, scores)
        return f"voted round {r}: model {digest.hex()[:12]} from {len(good)}/{len(fetched)} updates"
