"""One peer's part in the rounds: a step function driven only by what the chain says.

`Peer.step()` looks at the open round and does the one thing due, if any:
adopt a newly finalized model, train and commit, reveal, fetch + verify +
aggregate + vote, or finalize, and returns a `StepEvent` saying what it did.
Everything it must not forget across a restart (above all the salt of a
commitment) is written atomically to its state file *before* the transaction
that depends on it, so a crash never loses a reveal and a restart never commits
twice.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from eth_account.signers.local import LocalAccount

from ledger.client import FederationClient, proposal_id
from ledger.errors import ContractRevert
from ledger.types import MemberStatus, Phase, Proposal
from node.core.codec import MAX_ABS, IntArray, content_hash, encode
from node.core.valuation import abstentions
from node.errors import NodeError
from node.events import EventKind, EventSink, StepEvent, Timings
from node.horizontal.exchange import (
    PREFETCH_TIMEOUT,
    Cache,
    FetchedUpdate,
    collect_updates,
    evaluated_in,
    fetch_model,
    last_finalized_before,
    model_before,
    prefetch,
)
from node.horizontal.outcome import Outcome, round_outcome
from node.horizontal.spec import EVALUATION, NodeSpec, model_hash
from node.horizontal.state import PeerState
from node.horizontal.verify import rerun
from node.learn.data import Dataset
from node.learn.evaluation import evaluate_updates
from node.learn.model import train
from node.privacy.dp import DPTraining, Mechanism, onchain_epsilon, train_private
from node.privacy.sealing import Sealer
from node.store import STORE_TIMEOUT, Store

__all__ = ["EvaluationMaker", "Peer", "UpdateMaker"]

# How a peer makes its round-`r` update from the global model: honest training, or a simulated cheat.
UpdateMaker = Callable[["Peer", int, dict[str, IntArray]], dict[str, IntArray]]
# What a peer publishes as its evaluation in round `r`, given the honest one: itself, or a simulated lie.
EvaluationMaker = Callable[["Peer", int, IntArray], IntArray]

# Another peer (or the clock) moved the round first: nothing to do, look again.
_RACES = ("RoundNotInPhase", "NotCurrentRound", "AlreadyVoted", "AlreadyCommitted", "VoteWindowClosed", "VotesPending")


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
        on_event: EventSink | None = None,
        make_update: UpdateMaker | None = None,
        make_evaluation: EvaluationMaker | None = None,
    ) -> None:
        self.name, self.account, self.fed, self.store, self.data, self.nspec = name, account, fed, store, data, nspec
        self.state = state or PeerState()
        self.from_block = from_block
        self.on_event: EventSink = on_event or (lambda _event: None)
        self.make_update: UpdateMaker = make_update or Peer.trained_update
        self.make_evaluation: EvaluationMaker = make_evaluation or (lambda _peer, _r, honest: honest)
        self._cache: Cache = {}  # contents fetched in the last rounds, by (member, content hash)
        self._tried: set[tuple[int, str, bytes]] = set()  # contents prefetched (or tried) in the reveal phase
        self._results: dict[int, tuple[list[FetchedUpdate], Outcome]] = {}  # round -> what this peer computed
        self._proposals: dict[int, Proposal] = {}  # round -> what this peer votes for
        self.last_round: int | None = None  # commit to no round after it (the last one's vote then goes alone)
        self.params: dict[str, IntArray] = nspec.initial_model()
        self.loaded_round = 0  # the finalized round whose model is in `params` (0: the initial model)
        self.computed: dict[int, dict[str, IntArray]] = {}  # round -> the model this peer voted for
        self._previous: tuple[int, dict[str, IntArray]] | None = None  # (loaded_round, the model before it)
        # seconds spent in train, encode, publish, chain (transactions), fetch, aggregate, adopt; added up
        self.timings = Timings()
        self._step_timings = Timings(self.timings)
        self._learning: set[tuple[int, int]] = set()  # sealed: (model round, open round) a key was sought in
        self._key_since: int | None = None  # sealed: the first round this member's registered key is sealed to
        self._trained_on = 0  # the round of the model the last update was trained on (0: the initial model)
        self._budget_noted = False  # whether this peer said its privacy budget is spent
        self._dp_checked = False  # whether its privacy history was checked against the chain
        t, dp = nspec.training, nspec.privacy
        # This peer's DP-SGD (its own sampling rate and noise), when the spec has [privacy].
        self.dp: DPTraining | None = None if dp is None else dp.for_member(len(data.y), t.batch_size, t.epochs)
        # This member's sealing (its key derived from its account key), when the spec has [sealing].
        self.sealer: Sealer | None = None
        if nspec.sealing is not None:
            self.sealer = Sealer.for_member(fed, account, nspec.sealing, self.state.model_keys, from_block)

    @property
    def epsilon(self) -> float:
        """The differential privacy this peer has spent so far (0 without [privacy])."""
        return 0.0 if self.dp is None else self.dp.config.spent(self._dp_history())

    def _dp_history(self) -> list[Mechanism]:
        return [(float(m[0]), float(m[1]), int(m[2])) for m in self.state.dp_rounds.values()]

    def _recover_dp_rounds(self) -> None:
        """Count every round the chain shows this peer committed a DP update to (its `PrivacySpent` events)
        that its state file does not hold (a state lost or restored from a backup), at its mechanism now:
        a lost file must not reset the budget."""
        if self._dp_checked or self.dp is None:
            return
        mine = self.address.lower()
        on_chain = {
            str(int(e["args"]["round"]))
            for e in self.fed.events("PrivacySpent", self.from_block)
            if str(e["args"]["member"]).lower() == mine
        }
        lost = sorted(on_chain - set(self.state.dp_rounds), key=int)
        self._dp_checked = True
        if lost:
            for r in lost:
                self.state.dp_rounds[r] = list(self.dp.mechanism)
            self.state.save()
            self.on_event(self._event("privacy-recovered", int(lost[-1]), rounds=[int(r) for r in lost]))

    @property
    def address(self) -> str:
        return str(self.account.address)

    def _timed(self, key: str) -> AbstractContextManager[None]:
        """Time a part of the step, both in this step's event and in the running totals."""
        return self._step_timings(key)

    def _event(self, kind: EventKind, r: int, **details: Any) -> StepEvent:
        return StepEvent(kind, r, details, dict(self._step_timings))

    # -- the global model -----------------------------------------------------

    def adopt_latest(self, last: int | None = None) -> bool:
        """Load the newest finalized model (`last`, when the caller just read it), fetched by CID and
        checked against its hash."""
        last = self.fed.last_finalized() if last is None else last
        if last == self.loaded_round:
            return False
        info = self.fed.round(last)
        old = self.params
        try:
            with self._timed("adopt"):
                self.params = self._fetch_model(last)
        except NodeError as exc:
            mine = self.computed.get(last)
            if mine is None or model_hash(mine) != info.model_hash:
                raise NodeError(f"cannot adopt round {last}'s model {info.model_cid}: {exc}") from exc
            self.params = mine  # the quorum's model is the one we computed ourselves
        self._remember_model(last, self.params)
        if all(self.fed.round(k).phase != Phase.FINALIZED for k in range(self.loaded_round + 1, last)):
            self._previous = (last, old)  # what we held was the model `last` started from
        self.loaded_round = last
        self.state.model_round, self.state.model_cid = last, info.model_cid
        self.state.save()
        self.computed = {k: v for k, v in self.computed.items() if k > last}
        self.on_event(self._event("adopted", last, model_hash=info.model_hash.hex(), model_cid=info.model_cid))
        return True

    def _fetch_model(self, k: int) -> dict[str, IntArray]:
        """Finalized round `k`'s model. Sealed, and no key held opens it: learn its key from the updates revealed
        since (those trained on it name it), or re-run round k if its updates were sealed to this member, as a
        member who joined since, was left out, or computed another model must (the re-run once a round)."""
        try:
            return fetch_model(self.fed, self.store, self.nspec, k, self.sealer)
        except NodeError:
            if self.sealer is None:
                raise
        current = self.fed.current_round()
        for j in range(max(k + 1, current - 1), current + 1):  # the rounds whose updates may name its key
            args = (self.fed, self.store, self.nspec, j, self._scan_from(j), self._cache, self._tried)
            prefetch(*args, sealer=self.sealer)
        try:
            return fetch_model(self.fed, self.store, self.nspec, k, self.sealer)
        except NodeError:  # nothing trained on it yet: re-run round k, if its updates were sealed to us
            if (k, current) in self._learning:
                raise
            self._learning = {(k, current)}
            _fetched, outcome = rerun(self.fed, self.store, self.nspec, k, self._scan_from(k), None, self.sealer)
            if outcome.used == 0 or model_hash(outcome.model) != self.fed.round(k).model_hash:
                raise
            self._remember_model(k, outcome.model)
            return outcome.model

    def _remember_model(self, r: int, params: dict[str, IntArray]) -> None:
        """Sealed: keep round `r`'s model key (from the model), for the headers of updates trained on it."""
        if self.sealer is not None:
            known = self.sealer.known.get(r)  # opened with it: nothing to derive
            self.state.model_keys[str(r)] = (known or self.sealer.remember(r, encode(params))).hex()

    # -- one step ---------------------------------------------------------------

    def trained_update(
        self, round_id: int, base: dict[str, IntArray], data: Dataset | None = None
    ) -> dict[str, IntArray]:
        """Train on local data (or `data`) from `base` for round `round_id`; the update is the difference.
        With [privacy], on its own data, by DP-SGD."""
        cfg = self.nspec.training.for_round(round_id)
        if self.dp is not None and data is None:  # sampling and noise from a fresh secret key
            trained = train_private(self.nspec.model, base, self.data, cfg, self.dp, os.urandom(32))
        else:
            trained = train(self.nspec.model, base, self.data if data is None else data, cfg)
        return {k: np.clip(trained[k] - base[k], -MAX_ABS, MAX_ABS) for k in base}

    def step(self) -> StepEvent:
        """Do the one action the chain state calls for; returns what was done (`kind == "idle"` for nothing).

        Every view of the step reads one block (over JSON-RPC: asked for once), so the step
        acts on one consistent state and asks the chain for each value once.
        """
        with self.fed.chain.pinned():
            return self._step()

    def _step(self) -> StepEvent:
        """Rounds overlap: while round r-1 is in its vote, round r is open. A revealer of r-1 votes on
        it inside its round r commit (or alone, if it cannot commit), and the first round r reveal
        that finds r-1 decided finalizes it: two transactions a round."""
        self._step_timings = Timings(self.timings)
        view = self.fed.step_view(self.address)
        r = view.round
        if self.sealer is not None and self._key_since is None:  # sealed: our key on chain before anything else
            registered = self._register_key(r)
            if registered is not None:
                return registered
        if r == 0:
            return StepEvent("idle")
        self._note_round_start(r, view.stored)
        if view.due:  # a timeout is pending: apply it
            with self._timed("chain"):
                self.fed.advance(self.account)
            return self._event("advanced", r, window=view.stored.name.lower())
        # In every phase: a peer restarted mid-round must aggregate on the round's base model.
        phase, status = view.stored, view.status
        revealing = phase == Phase.REVEAL and status == MemberStatus.COMMITTED  # our reveal will finalize it
        try:
            self.adopt_latest(view.finalized)
            adopted = True
        except NodeError as exc:  # nobody serves the agreed model and we did not compute it
            if not (revealing and str(r) in self.state.commits):
                return self._event("model-unavailable", r, model_round=view.finalized, reason=str(exc))
            adopted = False
        try:
            if not adopted:  # a reveal needs no model: send ours (learning the model's key may take the others')
                return self._reveal(r, None)
            if view.voting and view.prev_status == MemberStatus.REVEALED:  # our vote on r-1 is due
                proposal = self._proposal(r - 1)
                if proposal is None:
                    return StepEvent("idle", r)
                if phase == Phase.COMMIT and status == MemberStatus.NONE and self._takes_part(r):
                    return self._commit(r, proposal)
                return self._vote(r - 1, proposal)
            if view.voting and view.prev_finalizable and not revealing:
                return self._finalize(r - 1)
            if phase == Phase.COMMIT and status == MemberStatus.NONE and self._takes_part(r):
                return self._commit(r, None)
            if phase == Phase.REVEAL and status == MemberStatus.COMMITTED and str(r) in self.state.commits:
                return self._reveal(r, self._proposals.get(r - 1) if view.prev_finalizable else None)
            if phase == Phase.REVEAL:  # waiting for the others' reveals: fetch those already in
                with self._timed("fetch"):
                    args = (self.fed, self.store, self.nspec, r, self._scan_from(r), self._cache, self._tried)
                    prefetch(*args, sealer=self.sealer)
        except ContractRevert as exc:
            if exc.error_name in _RACES:
                return StepEvent("idle", r)
            raise
        return StepEvent("idle", r)

    def _takes_part(self, r: int) -> bool:
        """Whether this peer commits to round r: not after its last round, nor once its privacy budget cannot
        pay for another update (it says so once; it still votes on the rounds it revealed in)."""
        if self.last_round is not None and r > self.last_round:
            return False
        dp = self.dp
        if dp is None:
            return True
        self._recover_dp_rounds()
        if str(r) in self.state.dp_rounds or dp.can_add(self._dp_history()):
            return True
        if not self._budget_noted:
            self._budget_noted = True
            self.on_event(self._event("budget-spent", r, epsilon=self.epsilon, budget=dp.config.epsilon))
        return False

    def _previous_model(self) -> dict[str, IntArray] | None:
        """The global model before the one this peer holds (None when it holds the initial model)."""
        if self.loaded_round == 0:
            return None
        if self._previous is None or self._previous[0] != self.loaded_round:
            before = model_before(self.fed, self.store, self.nspec, self.loaded_round, self.sealer)
            self._previous = (self.loaded_round, before[1])
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
            start = self.fed.block_number()
        else:
            start = self.state.round_blocks.get(str(r - 1), self.from_block)
        # Kept for the newest KEEP_ROUNDS rounds (the state trims the rest when it saves): while round r
        # is open, round r-1's outcome scans from round r-2's block.
        self.state.round_blocks = {k: v for k, v in self.state.round_blocks.items() if int(k) >= r - 2}
        self.state.round_blocks[str(r)] = start

    def _commit(self, r: int, vote: Proposal | None) -> StepEvent:
        """Train on round r's base model and commit; with `vote`, vote for it on round r-1 in the same transaction."""
        me = self.fed.member(self.address)
        if me.joined_round >= r:
            return StepEvent("idle", r)
        stake = self.fed.config()["stake"]
        if me.stake < stake:  # slashed earlier: top the stake up, or sit the round out
            if self.fed.token.balance_of(self.address) < stake - me.stake:
                self.on_event(self._event("stake-short", r, stake=me.stake, needed=stake))
                return StepEvent("idle", r)
            with self._timed("chain"):
                self.fed.add_stake(self.account, stake - me.stake)
            return self._event("topped-up", r, amount=stake - me.stake)
        if self.sealer is not None and (self._key_since is None or self._key_since > r):
            return StepEvent("idle", r)  # a round some sender may have sealed without our key: sit it out
        kept, data = self.state.commits.get(str(r)), self.state.update(r)
        if kept is not None and data is not None and content_hash(data).hex() == kept["hash"]:
            # Prepared before a restart (and perhaps sent, still pending): send the same commitment again.
            digest, salt = bytes.fromhex(kept["hash"]), bytes.fromhex(kept["salt"])
        else:
            made = self._content(r)
            if isinstance(made, StepEvent):
                return made
            data = made
            with self._timed("encode"):
                digest, salt = content_hash(data), secrets.token_bytes(32)
            # Before the commit: a crash after it must still be able to reveal. Not published yet.
            self.state.keep_update(r, data)
            self.state.commits[str(r)] = {"hash": digest.hex(), "salt": salt.hex(), "base": str(self._trained_on)}
            if self.dp is not None:  # spent once trained: counted before it can leak
                self.state.dp_rounds[str(r)] = list(self.dp.mechanism)
            self.state.save()
        pid = proposal_id(vote.model_hash, vote.model_cid, vote.scores) if vote else bytes(32)
        epsilon = self.epsilon
        with self._timed("chain"):
            commitment = self.fed.commitment_for(r, self.address, digest, salt)
            self.fed.commit(self.account, r, commitment, pid, onchain_epsilon(epsilon))
        if vote is not None:
            self.on_event(self._voted(r - 1, vote))
        if self.dp is None:
            return self._event("committed", r, hash=digest.hex(), bytes=len(data))
        return self._event("committed", r, hash=digest.hex(), bytes=len(data), epsilon=epsilon)

    def _register_key(self, r: int) -> StepEvent | None:
        """Sealed: register this member's encryption key if it has none on chain (an event; None if it is there,
        or if this account is not a member yet); remember from which round it is sealed to."""
        assert self.sealer is not None
        public = self.sealer.key.public
        mine = self.fed.encryption_keys().get(self.address)
        if mine is None:
            if not self.fed.member(self.address).active:
                return None
            with self._timed("chain"):
                self.fed.set_encryption_key(self.account, public)
            return self._event("key-registered", r, key=public.hex())
        if mine[0] != public:
            raise NodeError(
                f"{self.address} registered the encryption key 0x{mine[0].hex()}, not the one its account key "
                "derives: it cannot open updates sealed to it"
            )
        self._key_since = mine[1]
        return None

    def _content(self, r: int) -> bytes | StepEvent:
        """This peer's round-r content, encoded: its update trained on round r's base model (and, scoring by
        evaluation, its evaluation of round r-1's updates); an event if the base model cannot be had."""
        try:
            base = self._base(r)
        except NodeError as exc:
            return self._event("model-unavailable", r, model_round=r - 1, reason=str(exc))
        with self._timed("train"):
            update = self.make_update(self, r, base)
        if self.nspec.evaluates:
            try:
                with self._timed("evaluate"):
                    update = {**update, EVALUATION: self.make_evaluation(self, r, self._evaluation(r))}
            except NodeError as exc:  # the previous round's contents or base model cannot be had
                return self._event("model-unavailable", r, model_round=r - 1, reason=str(exc))
        with self._timed("encode"):
            return encode(update)

    def _reveal(self, r: int, previous: Proposal | None) -> StepEvent:
        c = self.state.commits[str(r)]
        cid = c.get("cid")
        if cid is None:  # publish now: every commitment is in, nobody can copy it into theirs
            data = self.state.update(r)
            if data is None or content_hash(data) != bytes.fromhex(c["hash"]):
                return self._event("unrevealable", r, reason="the committed update was lost")
            if self.sealer is not None:  # sealed now: to the members (and their keys) of the reveal phase
                with self._timed("encode"):
                    base = int(c.get("base", "0"))
                    before = last_finalized_before(self.fed, base) if base > 0 else 0
                    data = self.sealer.seal_update(data, r, base, before)
            with self._timed("publish"):
                cid = self.store.put(data)
            c["cid"] = cid
            self.state.save()
        with self._timed("chain"):
            self.fed.reveal(self.account, r, bytes.fromhex(c["hash"]), cid, bytes.fromhex(c["salt"]), previous)
        sealed = {} if self.sealer is None else {"sealed": True}
        return self._event("revealed", r, hash=c["hash"], cid=cid, **sealed)

    def _evaluation(self, r: int) -> IntArray:
        """This peer's evaluation of round r-1's usable updates (not its own) on its rows; abstentions
        when round r-1 did not finalize (its updates made no model)."""
        n = evaluated_in(self.fed, self.nspec, r)
        if n == 0 or not self.fed.round(r).chained:  # round r-1 never reached its vote: it made no model
            return abstentions(n)
        fetched, outcome = self._outcome(r - 1)
        index = {m.lower(): i for i, m in enumerate(self.fed.members()[:n])}
        usable = {
            index[f.member.lower()]: f.update
            for f in fetched
            if f.update is not None and f.member not in outcome.rejected
        }
        # What round r-1 started from: the model held, until round r-1's own is adopted.
        base = self.params if self.loaded_round < r - 1 else self._previous_model() or self.nspec.initial_model()
        own = index.get(self.address.lower())
        return evaluate_updates(self.nspec.model, base, usable, self.data, n, own)

    def _base(self, r: int) -> dict[str, IntArray]:
        """The model round r trains on: round r-1's when round r opened on its vote (computed here
        until it is finalized), else the newest finalized one."""
        if self.loaded_round >= r - 1 or not self.fed.round(r).chained:
            self._trained_on = self.loaded_round
            return self.params
        if self._proposal(r - 1) is None:
            raise NodeError(f"no update of round {r - 1} could be used")
        self._trained_on = r - 1
        return self.computed[r - 1]

    def _outcome(self, r: int) -> tuple[list[FetchedUpdate], Outcome]:
        """Round r's checked updates and what they give, computed once (round r is in its vote or
        finalized, so its base model is the newest finalized one, or the one before that)."""
        if r in self._results:
            return self._results[r]
        if self.loaded_round == r - 1 or (self.loaded_round < r and self.fed.round(r).phase == Phase.VOTE):
            with self._timed("fetch"):
                args = (self.fed, self.store, self.nspec, r, self._scan_from(r))
                budget = self._fetch_budget(r)
                fetched = collect_updates(*args, cache=self._cache, sealer=self.sealer, timeout=budget)
                members = self.fed.members()[: self.fed.round(r).member_count]
                previous = self._previous_model()
            with self._timed("aggregate"):
                evaluated = evaluated_in(self.fed, self.nspec, r)
                outcome = round_outcome(self.nspec, self.params, fetched, members, previous, evaluated)
        else:  # restarted since, or the round moved on: re-run it from public data
            with self._timed("fetch"):
                args = (self.fed, self.store, self.nspec, r, self._scan_from(r))
                fetched, outcome = rerun(*args, self._cache, self.sealer)
        self._results = {k: v for k, v in self._results.items() if k >= r - 1}
        self._results[r] = (fetched, outcome)
        for member, reason in outcome.rejected.items():
            self.on_event(self._event("rejected", r, member=member, reason=reason))
        return fetched, outcome

    def _fetch_budget(self, r: int) -> float | None:
        """Seconds one update may take to fetch for round r's vote: what is left of its vote window, less a
        third of the window (at least 3 s) kept for the vote's transaction; never under PREFETCH_TIMEOUT nor
        over the store's own timeout. An update behind a partition must not hold every honest voter past
        the deadline (each would be slashed for not voting). None until the round has entered its vote (the
        window starts then): the store's own. The timeout is per read; the contents are fetched at once."""
        info = self.fed.round(r)
        if info.phase != Phase.VOTE:
            return None
        window = self.fed.config()["vote_window"]
        left = info.phase_at + window - self.fed.chain.now() - max(3.0, window / 3)
        return max(PREFETCH_TIMEOUT, min(left, STORE_TIMEOUT))

    def _proposal(self, r: int) -> Proposal | None:
        """What this peer votes for in round r (model published, scores), or None if no update was usable."""
        if r in self._proposals:
            return self._proposals[r]
        _fetched, outcome = self._outcome(r)
        if outcome.used == 0:
            return None
        with self._timed("encode"):
            model_bytes = encode(outcome.model)
            digest = content_hash(model_bytes)
        if self.sealer is not None:  # the same sealed bytes from every member who computed it
            with self._timed("encode"):
                model_bytes = self.sealer.seal_model(model_bytes, r)
        with self._timed("publish"):
            cid = self.store.put(model_bytes)
        self.computed[r] = outcome.model
        self._proposals = {k: v for k, v in self._proposals.items() if k >= r - 1}
        self._proposals[r] = Proposal(digest, cid, list(outcome.scores))
        return self._proposals[r]

    def _voted(self, r: int, p: Proposal) -> StepEvent:
        fetched, outcome = self._results[r]
        return self._event(
            "voted",
            r,
            model_hash=p.model_hash.hex(),
            model_cid=p.model_cid,
            used=outcome.used,
            fetched=len(fetched),
            scores=outcome.scores,
            rejected=outcome.rejected,
        )

    def _vote(self, r: int, p: Proposal) -> StepEvent:
        """Vote on round r alone (this peer cannot commit to the round after it)."""
        with self._timed("chain"):
            self.fed.vote(self.account, r, p.model_hash, p.model_cid, p.scores)
        return self._voted(r, p)

    def _finalize(self, r: int) -> StepEvent:
        """Finalize round r alone (nobody's reveal carried it): on our own result if it won (votes riding in
        commits name the winner by id only), else on the winner's `Proposed` event, if one was logged."""
        mine = self._proposal(r)  # from public data, if this peer did not compute it as a voter
        winner = self.fed.round(r).winner
        ours = mine is not None and proposal_id(mine.model_hash, mine.model_cid, mine.scores) == winner
        with self._timed("chain"):
            self.fed.finalize(self.account, r, mine if ours else None, from_block=self._scan_from(r))
        self.adopt_latest()
        return self._event("finalized", r)
