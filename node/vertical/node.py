"""A vertical task's members as step machines: the owner and a feature party, driven by the chain.

Each member reads the task contract and the messages logged to it (`Message`
events: sender, kind, epoch, sequence number, sha256, CID), does whatever is due,
and returns a line for each thing it did. A daemon calls `step()` at every block;
the demo calls every member's in turn. Every message is sealed to its recipient
(`node.privacy.seal`, the key the recipient registered on chain), stored, and
logged on chain, where the recipient finds it; the sealed bytes' digest goes
into the sender's epoch root too.

The owner and each party run the PSI (`node.vertical.psi`: blinded sets, then
each re-blinded by the other), the owner hands out sample ids, posts the
intersection size and every party confirms it. Then, step by step, each party
sends the embedding of the step's batch and the owner answers with its
gradient. After an epoch's steps each party sends the embeddings of the
validation rows (and, after the last epoch, of the test rows) and every member
commits the epoch. Finally the owner values the parties (Shapley) and settles.

Received messages are untrusted: a message that does not open, is not what its
digest says, or has the wrong shape or values is refused as malformed (counted
in `rejected`) and treated as not sent. A party that sends nothing for a whole
window is timed out on chain by the owner, and the task goes on without it; the
owner, silent for a window, is timed out by a party.

Known limit: a member keeps its secrets and model in memory, so a member that
restarts mid-task cannot go on (it is timed out like a silent one).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_account.signers.local import LocalAccount

from ledger.errors import ContractRevert
from ledger.vertical import Kind, Stage, VerticalTaskClient
from node.errors import NodeError
from node.privacy.seal import OVERHEAD, Context, SealError, SealKey, seal
from node.store import Store, StoreError, StoreRefused
from node.vertical.data import PartyData
from node.vertical.messages import (
    MessageError,
    Outbox,
    decode_matches,
    decode_matrix,
    encode_reply,
    matches_size,
    matrix_size,
    merkle_root,
)
from node.vertical.model import PartyModel, load_party_model, save_model
from node.vertical.party import FeatureParty, OwnerParty
from node.vertical.psi import MAX_QUERY, MAX_SET, POINT, Alignment, PsiError, PsiParty, point_count, task_tag
from node.vertical.shapley import shares_bps, table_bytes
from node.vertical.spec import TaskSpec
from node.vertical.split import Batches

__all__ = ["MAX_PSI", "Malformed", "OwnerNode", "PartyNode", "TaskMember"]

MAX_PSI = 16 + POINT * MAX_SET + 16 * MAX_SET  # the largest PSI or alignment message (points and sample ids)
_MAX_SEQ = MAX_SET + 2  # no epoch has more steps than rows (plus the validation and test embeddings)
_Key = tuple[str, int, int, int]  # (the other member, kind, epoch, seq)
_SCORING = (int(Kind.QUERY), int(Kind.REPLY))  # once paid: epoch is the request number, seq its step


class Malformed(NodeError):
    """A message a member logged that cannot be used: it does not open, or is not what it claims."""


def _check_terms(spec: TaskSpec, task: VerticalTaskClient) -> None:
    """Refuse a task whose contract does not hold what the spec says: its owner, its parties, its terms and
    (when the spec names one) its token. The spec hash alone binds the spec, not the deployment's arguments."""
    expected = spec.terms.on_chain(spec.model.epochs)
    if task.owner() != spec.owner.address:
        raise NodeError(f"the task at {task.address} is owned by {task.owner()}, not the spec's {spec.owner.address}")
    if task.parties() != [m.address for m in spec.parties]:
        raise NodeError(f"the task at {task.address} invites other parties than the spec")
    if task.terms() != expected:
        raise NodeError(f"the task at {task.address} has other terms than the spec: {task.terms()} against {expected}")
    if spec.terms.token and task.token.address.lower() != spec.terms.token.lower():
        raise NodeError(f"the task at {task.address} pays in {task.token.address}, not the spec's {spec.terms.token}")


class TaskMember:
    """What the owner and a party share: the chain, the store, sealing, and the messages logged to it."""

    def __init__(
        self,
        spec: TaskSpec,
        name: str,
        account: LocalAccount,
        task: VerticalTaskClient,
        store: Store,
        key: SealKey,
        from_block: int = 0,
        fetch_timeout: float | None = None,
        model_path: Path | None = None,
    ) -> None:
        if spec.member(name).address != account.address:
            raise NodeError(f"the account {account.address} is not {name!r}'s in the task spec")
        if task.spec_hash() != spec.hash:
            raise NodeError(f"the task at {task.address} was deployed with another spec than this one")
        _check_terms(spec, task)
        self.spec, self.name, self.account, self.task, self.store, self.key = spec, name, account, task, store, key
        self.address = account.address
        self.from_block = from_block
        self.fetch_timeout = fetch_timeout
        self.model_path = model_path  # where the trained part is kept for scoring (None: memory only)
        self.tag = task_tag(task.chain.chain_id, task.address, 0)
        self.outbox = Outbox()
        self.inbox: dict[_Key, dict[str, Any]] = {}
        self.posted: set[_Key] = set()
        self.rejected: Counter[str] = Counter()  # malformed messages received, by sender
        self.stats: dict[str, Counter[str]] = defaultdict(Counter)  # "psi", "epoch 1", ... -> bytes, gas, messages
        self.done = False
        self._keys: dict[str, bytes] = {}
        self._opened: dict[_Key, bytes | Malformed] = {}
        self._seen = 0  # Message events read so far

    # -- messages ---------------------------------------------------------------

    def _scan(self) -> None:
        """The messages logged to this member (the first for each place), and those it logged; read once
        each, and only places the protocol has (a member logging elsewhere only pays gas)."""
        events = self.task.events("Message", self.from_block)
        fresh, self._seen = events[self._seen :], len(events)
        for event in fresh:
            a = event["args"]
            sender, recipient = self.spec.name_of(a["from"]), self.spec.name_of(a["to"])
            if sender is None or recipient is None:
                continue
            place = (int(a["kind"]), int(a["epoch"]), int(a["seq"]))
            if place[0] in _SCORING:  # (request number, step)
                if place[2] > 1:
                    continue
            elif place[1] >= self.spec.model.epochs or place[2] > _MAX_SEQ:
                continue
            if recipient == self.name:
                self.inbox.setdefault((sender, *place), a)
            elif sender == self.name:
                self.posted.add((recipient, *place))

    def _context(self, sender: str, recipient: str, kind: Kind, epoch: int, seq: int) -> Context:
        addresses = self.spec.member(sender).address, self.spec.member(recipient).address
        return Context(self.task.chain.chain_id, self.task.address, *addresses, kind.name.lower(), epoch, seq)

    def _account(self, stat: str, receipt: Mapping[str, Any]) -> None:
        self.stats[stat]["gas"] += int(receipt["gasUsed"])

    def _send(self, to: str, kind: Kind, epoch: int, seq: int, make: Callable[[], bytes], stat: str) -> bool:
        """Seal what `make()` returns to `to`, store it, log it; once per place (False: sent before)."""
        if (to, int(kind), epoch, seq) in self.posted:
            return False
        if to not in self._keys:
            self._keys[to] = self.task.encryption_key(self.spec.member(to).address)
        sealed = seal(make(), self._keys[to], self._context(self.name, to, kind, epoch, seq))
        if kind in (Kind.EMBEDDING, Kind.GRADIENT):
            self.outbox.add(sealed)
        cid = self.store.put(sealed)
        digest = hashlib.sha256(sealed).digest()
        self._account(stat, self.task.post(self.account, self.spec.member(to).address, kind, epoch, seq, digest, cid))
        self.stats[stat]["bytes"] += len(sealed)
        self.stats[stat]["messages"] += 1
        self.posted.add((to, int(kind), epoch, seq))
        return True

    def _receive(self, sender: str, kind: Kind, epoch: int, seq: int, max_size: int) -> bytes | None:
        """The plaintext `sender` logged for this place, None if not (yet) there or not fetchable yet;
        raises Malformed if what it logged cannot be used (then, every time it is asked for)."""
        place = (sender, int(kind), epoch, seq)
        found = self._opened.get(place)
        if isinstance(found, Malformed):
            raise found
        if found is not None:
            return found
        logged = self.inbox.get(place)
        if logged is None:
            return None
        ctx = self._context(sender, self.name, kind, epoch, seq)
        try:
            data = self.store.get(str(logged["cid"]), max_size + OVERHEAD, timeout=self.fetch_timeout)
        except StoreRefused as exc:  # not a CID, or too large: the sender's doing
            raise self._refuse(place, f"{ctx.what()}: {exc}") from None
        except StoreError:
            return None  # not reachable yet: try again at the next step
        try:
            if hashlib.sha256(data).digest() != bytes(logged["digest"]):
                raise SealError(f"{ctx.what()}: the stored bytes are not those logged on chain")
            plain = self.key.open(data, ctx, max_size)
        except SealError as exc:
            raise self._refuse(place, str(exc)) from None
        self._opened[place] = plain
        return plain

    def _refuse(self, place: _Key, why: str) -> Malformed:
        """Remember `place` as malformed (asked again, it is refused again) and count it against its sender."""
        refused = Malformed(why)
        self._opened[place] = refused
        self.rejected[place[0]] += 1
        return refused

    def _matrix(self, sender: str, kind: Kind, epoch: int, seq: int, rows: int) -> npt.NDArray[np.float32] | None:
        """A matrix message, checked; None if not there yet. Malformed if it cannot be used."""
        embed = self.spec.model.embed
        data = self._receive(sender, kind, epoch, seq, matrix_size(rows, embed))
        if data is None:
            return None
        try:
            return decode_matrix(data, rows, embed, f"{kind.name.lower()} {epoch}.{seq} from {sender}")
        except MessageError as exc:
            raise self._refuse((sender, int(kind), epoch, seq), str(exc)) from None

    @property
    def ident(self) -> dict[str, Any]:
        """What names the task in a saved model: a model of another task is refused."""
        return {"chain_id": self.task.chain.chain_id, "contract": self.task.address, "spec_hash": self.spec.hash.hex()}

    def _late(self) -> bool:
        """A window has passed since the stage (or epoch) began: whoever owes a step can be timed out."""
        return self.task.chain.now() > self.task.stage_at() + self.spec.terms.window

    def _claim(self) -> list[str]:
        self.done = True
        owed = self.task.owed(self.address)
        if owed:
            self.task.claim(self.account)
            return [f"claimed {owed / 10**18:g} tokens"]
        return []


class PartyNode(TaskMember):
    """A feature party: its columns, its bottom model; it never sees labels or the others' columns."""

    def __init__(
        self,
        spec: TaskSpec,
        name: str,
        data: PartyData,
        x: npt.NDArray[np.float32],
        serve: bool = False,
        max_query: int = MAX_QUERY,
        **kw: Any,
    ) -> None:
        super().__init__(spec, name, **kw)
        self.x, self.ids = x, data.ids
        self.serve, self.max_query = serve, max_query  # answer scoring requests once paid, up to so many ids each
        self.model: PartyModel | None = None
        self.served: dict[int, str] = {}  # scoring request -> what became of it
        self._queries: dict[int, tuple[PsiParty, int]] = {}  # request -> (its second secret, prospects)
        self.psi = PsiParty(data.ids, self.tag)
        self.alignment: Alignment | None = None
        self.role: FeatureParty | None = None
        self.batches: Batches | None = None
        self.cursor = (0, 0)
        self.awaiting = False

    @property
    def owner(self) -> str:
        return self.spec.owner.name

    def step(self) -> list[str]:
        stage = self.task.stage()
        if stage in (Stage.VALUING, Stage.PAID) and self.model is None and self.role is not None:
            self._keep_model()
        if stage == Stage.PAID and self.serve and not self.task.party(self.address).dropped:
            did = self._claim() if self.task.owed(self.address) else []
            self.done = False  # serving until stopped
            return [*did, *self._serve()]
        if stage in (Stage.PAID, Stage.CANCELLED):
            return self._claim()
        info = self.task.party(self.address)
        if stage == Stage.OPEN and not info.joined:
            self.task.join(self.account, self.key.public)
            return ["joined"]
        if info.dropped:
            return self._claim() if self.task.owed(self.address) else []
        if stage in (Stage.OPEN, Stage.VALUING):
            return self._owner_silent() if stage == Stage.VALUING else []
        self._scan()
        if stage == Stage.ALIGNING:
            return self._align(info.confirmed)
        return self._train(info.epochs_done)

    def _deadline_near(self) -> bool:
        """A quarter of the window is left before anyone may time this party out for what it owes."""
        return self.task.chain.now() > self.task.stage_at() + self.spec.terms.window * 3 // 4

    def _leave(self, why: str) -> list[str]:
        self._account("psi", self.task.leave(self.account))
        return [f"left the task before training, its stake back: {why}", *self._claim()]

    def _align(self, confirmed: bool) -> list[str]:
        if confirmed:
            return []
        did = []
        try:
            if self._send(self.owner, Kind.PSI, 0, 0, self.psi.blinded, "psi"):
                did.append("sent its blinded ids")
            theirs = self._receive(self.owner, Kind.PSI, 0, 0, MAX_PSI)
            if theirs is not None and (self.owner, int(Kind.PSI), 0, 1) not in self.posted:
                back, _ = self.psi.reblind(theirs, point_count(theirs, "the owner's set", MAX_SET))
                self._send(self.owner, Kind.PSI, 0, 1, lambda: back, "psi")
                self._opened.pop((self.owner, int(Kind.PSI), 0, 0), None)  # done with it: free the memory
                did.append("re-blinded the owner's ids")
            size = self.task.intersection()
            message = self._receive(self.owner, Kind.ALIGNMENT, 0, 0, MAX_PSI) if size else None
            if message is not None:
                alignment = Alignment.receive(message, size, self.psi.order)
                batches = Batches.of(list(alignment.rows), self.spec.model)
                self.alignment, self.batches = alignment, batches
                self.role = FeatureParty(self.name, self.x, alignment, self.spec.model)
                self._account("psi", self.task.confirm(self.account, size))
                return [*did, f"confirmed {size} aligned customers"]
        except (Malformed, NodeError) as exc:  # PsiError, SealError, too few rows to split: all NodeErrors
            return self._leave(str(exc))
        if size and self._deadline_near():  # the owner posted a size but no usable alignment reached us
            return self._leave("no alignment from the owner within the window")
        return did

    def _train(self, epochs_done: int) -> list[str]:
        role, batches = self.role, self.batches
        if role is None or batches is None:
            return []  # confirmed in another life: nothing to train with (see the module's known limit)
        e = self.task.epoch()
        if epochs_done > e:
            return self._owner_silent()
        if self.cursor[0] != e:
            self.cursor, self.awaiting = (e, 0), False
        steps = batches.epoch(e)
        stat, did = f"epoch {e + 1}", list[str]()
        while True:
            s = self.cursor[1]
            if s == len(steps) or self._deadline_near():  # done, or out of time: commit what was sent
                cut = s < len(steps)
                if not cut:
                    self._send(self.owner, Kind.EMBEDDING, e, s, lambda: role.embed(batches.valid), stat)
                    if e + 1 == self.spec.model.epochs:
                        self._send(self.owner, Kind.EMBEDDING, e, s + 1, lambda: role.embed(batches.test), stat)
                self._account(stat, self.task.commit_epoch(self.account, e, self.outbox.close_epoch()))
                self.cursor, self.awaiting = (e + 1, 0), False
                why = f"the owner's gradient {e + 1}.{s} never came; committed before the window ran out" if cut else ""
                return [*did, f"epoch {e + 1}: {s} steps, committed" + (f" ({why})" if why else "")]
            batch = steps[s]
            if not self.awaiting:
                if self._send(self.owner, Kind.EMBEDDING, e, s, lambda: role.forward(batch), stat):  # noqa: B023
                    did.append(f"sent the embedding of step {e + 1}.{s}")
                self.awaiting = True
            try:
                grad = self._matrix(self.owner, Kind.GRADIENT, e, s, len(batch))
                if grad is None:
                    return did
                role.backward(grad)
            except Malformed as exc:
                did.append(f"refused the owner's gradient {e + 1}.{s}: {exc}")  # no update for that step
            self.cursor, self.awaiting = (e, s + 1), False

    def _keep_model(self) -> None:
        """Training is over: keep the bottom model (and on disk, when the member has a model path)."""
        assert self.role is not None
        self.model = PartyModel(self.role.bottom)
        if self.model_path is not None:
            save_model(self.model_path, self.ident, self.name, self.role.bottom.net)

    def _serve(self) -> list[str]:
        """Answer the owner's scoring requests (node.vertical.scoring): only the newest; older ones are over."""
        if self.model is None:
            if self.model_path is None:
                raise NodeError(f"{self.name}: no trained model to score with (this process did not train it)")
            self.model = load_party_model(self.model_path, self.ident, self.name, self.x.shape[1], self.spec.model)
        self._scan()
        asked = sorted({r for sender, kind, r, seq in self.inbox if sender == self.owner and kind == Kind.QUERY})
        did: list[str] = []
        for r in asked:
            if r in self.served:
                continue
            if r < asked[-1]:  # the owner has moved on: it no longer waits for this one
                self.served[r] = "superseded by a later request"
                self._queries.pop(r, None)
                continue
            try:
                did += self._answer(r)
            except (Malformed, PsiError, MessageError) as exc:  # the owner's doing (an outage is not)
                self.served[r] = f"refused: {exc}"
                self._queries.pop(r, None)
                did.append(f"refused scoring request {r}: {exc}")
        return did

    def _answer(self, r: int) -> list[str]:
        """Scoring request `r`. In: the owner's blinded prospects a*H(p). Out: b1*a*H(p) and b2*a*H(p) in
        the owner's order, and this party's ids b1*H(y), sorted; two fresh secrets. In: for each prospect
        the owner found among b1*H(y), its position and b2*H(p) (the owner took its a off). This party looks
        those up among its own b2*H(y), computed here: a match is a customer the owner named. Out: the
        matched positions and those customers' embeddings. The owner never sees anything times b2 but its
        own query, so it can only name customers whose ids it knows."""
        did: list[str] = []
        if r not in self._queries:
            if (self.owner, int(Kind.REPLY), r, 1) in self.posted:
                self.served[r] = "answered"
                return []
            if (self.owner, int(Kind.REPLY), r, 0) in self.posted:  # its secrets went with a restart
                self.served[r] = "lost: this party restarted in the middle of it"
                return [f"scoring request {r}: lost (restarted in the middle of it); the owner will go on without"]
            query = self._receive(self.owner, Kind.QUERY, r, 0, MAX_PSI)
            if query is None:
                return []
            count = point_count(query, f"scoring request {r}", self.max_query)
            first, second = PsiParty(self.ids, self.tag), PsiParty(self.ids, self.tag)  # fresh secrets
            once_first, _ = first.reblind(query, count)
            once_second, _ = second.reblind(query, count)
            reply = once_first + once_second + first.blinded()
            self._send(self.owner, Kind.REPLY, r, 0, lambda: reply, "scoring")
            self._opened.pop((self.owner, int(Kind.QUERY), r, 0), None)
            self._queries[r] = (second, count)
            did.append(f"scoring request {r}: {count} prospects asked about; sent its blinded ids")
        second, count = self._queries[r]
        back = self._receive(self.owner, Kind.QUERY, r, 1, matches_size(count))
        if back is None:
            return did
        positions, points = decode_matches(back, count, f"scoring request {r}: the owner's matches")
        mine = second.values()
        matched = [(i, mine[p]) for i, p in zip(positions, points, strict=True) if p in mine]
        assert self.model is not None
        rows = [row for _, row in matched]
        embedding = self.model.bottom.embed(self.x[rows])
        reply = encode_reply([i for i, _ in matched], embedding)
        self._send(self.owner, Kind.REPLY, r, 1, lambda: reply, "scoring")
        self._queries.pop(r)
        self._opened.pop((self.owner, int(Kind.QUERY), r, 1), None)
        self.served[r] = "answered"
        return [*did, f"scoring request {r}: sent the embeddings of the {len(rows)} of its customers asked about"]

    def _owner_silent(self) -> list[str]:
        """Time out the owner when it alone owes the next step and a window has passed (the pool then
        goes to the parties): in valuation, or in an epoch every party still in has committed."""
        stage = self.task.stage()
        if stage == Stage.TRAINING:
            e = self.task.epoch()
            others = [self.task.party(m.address) for m in self.spec.parties]
            if self.task.owner_epochs() > e or any(not p.dropped and p.epochs_done <= e for p in others):
                return []
        if stage in (Stage.TRAINING, Stage.VALUING) and self._late():
            self.task.timeout(self.account, self.spec.owner.address)
            return ["timed out the silent owner: the pool goes to the parties"]
        return []


class OwnerNode(TaskMember):
    """The task owner: its columns and labels, the top model; it runs the PSI with every party."""

    def __init__(
        self,
        spec: TaskSpec,
        name: str,
        data: PartyData,
        x: npt.NDArray[np.float32],
        labels: npt.NDArray[np.float32],
        sample_key: bytes | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(spec, name, **kw)
        self.x, self.labels, self.sample_key = x, labels, sample_key
        self.psis = {n: PsiParty(data.ids, self.tag) for n in spec.names}  # a fresh secret per party
        self.party_double: dict[str, list[bytes]] = {}
        self.pairwise: dict[str, dict[int, bytes]] = {}
        self.excluded: dict[str, str] = {}  # parties left out of the alignment, and why
        self.alignment: Alignment | None = None
        self.role: OwnerParty | None = None
        self.batches: Batches | None = None
        self.cursor = (0, 0)
        self.losses: list[float] = []
        self.epoch_started = time.perf_counter()
        self.rounds: list[dict[str, Any]] = []
        self.valid: dict[str, npt.NDArray[np.float32] | None] = {}
        self.test: dict[str, npt.NDArray[np.float32] | None] = {}
        self.outcome: dict[str, Any] = {}
        self._waits: dict[tuple[str, int, int], int] = {}  # (party, epoch, seq) -> chain time the wait began
        self._absent: set[tuple[str, int]] = set()  # (party, epoch): given up on for the rest of that epoch

    def step(self) -> list[str]:
        stage = self.task.stage()
        if stage in (Stage.PAID, Stage.CANCELLED):
            return self._claim()
        if stage == Stage.OPEN:
            if not self.task.funded():
                self.task.fund(self.account, self.key.public)
                return ["escrowed the bounty"]
            return []
        self._scan()
        if stage == Stage.ALIGNING:
            return self._align()
        if stage == Stage.TRAINING:
            return self._train()
        return self._settle()

    def _parties(self) -> list[str]:
        """The parties still in the task."""
        return [n for n in self.spec.names if not self.task.party(self.spec.member(n).address).dropped]

    def _align(self) -> list[str]:
        did: list[str] = []
        if self.task.intersection():
            return self._timeouts(lambda n: not self.task.party(self.spec.member(n).address).confirmed)
        for n in self._parties():
            if n in self.excluded or n in self.pairwise:
                continue
            try:
                if self._send(n, Kind.PSI, 0, 0, self.psis[n].blinded, "psi"):
                    did.append(f"sent {n} its blinded ids")
                theirs = self._receive(n, Kind.PSI, 0, 0, MAX_PSI)
                if theirs is not None and n not in self.party_double:  # kept here, never sent back
                    _, self.party_double[n] = self.psis[n].reblind(theirs, point_count(theirs, f"{n}'s set", MAX_SET))
                    self._opened.pop((n, int(Kind.PSI), 0, 0), None)  # done with it: free the memory
                mine_back = self._receive(n, Kind.PSI, 0, 1, MAX_PSI)
                if mine_back is not None and n in self.party_double:
                    self.pairwise[n] = self.psis[n].intersect(mine_back, self.party_double[n])
                    self._opened.pop((n, int(Kind.PSI), 0, 1), None)
                    did.append(f"shares {len(self.pairwise[n])} customers with {n}")
            except (Malformed, NodeError) as exc:  # PsiError, SealError (a key it cannot seal to) too
                self.excluded[n] = str(exc)
                did.append(f"left {n} out of the alignment: {exc}")
        waiting = [n for n in self._parties() if n not in self.pairwise and n not in self.excluded]
        if waiting and self._late():
            for n in waiting:
                self.excluded[n] = "silent during the PSI"
            did.append(f"left {', '.join(waiting)} out of the alignment: silent for a window")
            waiting = []
        if waiting:
            return did
        return [*did, *self._post_alignment()]

    def _post_alignment(self) -> list[str]:
        """Hand out the sample ids (each party's message: where each aligned customer stands in its own
        list) and post the intersection size; or cancel when there is nothing to train on."""
        rows = sorted(set.intersection(*(set(v) for v in self.pairwise.values()))) if self.pairwise else []
        sample_ids = Alignment.choose(rows, self.sample_key)
        try:
            if len(rows) < self.spec.terms.min_intersection:
                raise NodeError(
                    f"only {len(rows)} shared customers, below the task's {self.spec.terms.min_intersection}"
                )
            batches = Batches.of(sample_ids, self.spec.model)
        except NodeError as exc:
            self.task.cancel(self.account)
            return [f"cancelled the task before training: {exc}"]
        self.alignment, self.batches = Alignment(dict(zip(sample_ids, rows, strict=True))), batches
        digests = []
        for n, shared in self.pairwise.items():
            where = {v: j for j, v in enumerate(self.party_double[n])}
            message = Alignment.message([(where[shared[r]], sid) for r, sid in zip(rows, sample_ids, strict=True)])
            self._send(n, Kind.ALIGNMENT, 0, 0, lambda: message, "psi")  # noqa: B023 (called at once)
            digests.append(hashlib.sha256(message).digest())
        self.party_double.clear()
        self._account("psi", self.task.align(self.account, len(rows), merkle_root(digests)))
        self.role = OwnerParty(self.x, self.labels, self.alignment, self.spec.names, self.spec.model)
        self.role.silent.update(n for n in self.spec.names if n not in self.pairwise)
        self.epoch_started = time.perf_counter()
        return [f"posted {len(rows)} aligned customers"]

    def _dropped(self) -> None:
        """Whoever the chain shows as dropped (timed out by anyone, or left) is silent from now on."""
        if self.role is not None:
            self.role.silent.update(n for n in self.spec.names if n not in self._parties())

    def _timeouts(self, owes: Callable[[str], bool]) -> list[str]:
        """Time out, once a window has passed, every party still in the task that owes a step (the
        contract checks it does; a party that has meanwhile done its part is left alone)."""
        late = [n for n in self._parties() if owes(n)]
        if not late or not self._late():
            return []
        done = []
        for n in late:
            try:
                self.task.timeout(self.account, self.spec.member(n).address)
            except ContractRevert:
                continue
            done.append(n)
            if self.role is not None:
                self.role.silent.add(n)
        return [f"timed out {', '.join(done)}: silent for a window; the task goes on without"] if done else []

    def _overdue(self, names: list[str], e: int, seq: int) -> list[str]:
        """Those of `names` the owner has waited on at (e, seq) for half a window of chain time: absent for
        the rest of epoch e (the step goes on with their constant embedding). Half a window, so the owner
        gives up on a slow party before the others must commit the epoch to keep their stakes."""
        now = self.task.chain.now()
        late = [n for n in names if now - self._waits.setdefault((n, e, seq), now) > self.spec.terms.window // 2]
        self._absent.update((n, e) for n in late)
        return late

    def _embeddings(self, e: int, seq: int, rows: int) -> tuple[dict[str, npt.NDArray[np.float32] | None], list[str]]:
        """Each active party's embedding for (e, seq) (None: malformed, or its party silent) and who is missing."""
        assert self.role is not None
        got: dict[str, npt.NDArray[np.float32] | None] = {}
        missing = []
        for n in self.spec.names:
            if n in self.role.silent or (n, e) in self._absent:
                got[n] = None
                continue
            try:
                got[n] = self._matrix(n, Kind.EMBEDDING, e, seq, rows)
            except Malformed:
                got[n] = None
                continue
            if got[n] is not None:
                continue
            owes = self.task.party(self.spec.member(n).address).epochs_done <= e
            if not owes:
                self._scan()  # it committed after logging: a scan from before its commit may have missed the log
            if owes or (n, int(Kind.EMBEDDING), e, seq) in self.inbox:  # not logged yet, or not fetchable yet
                missing.append(n)  # (one that committed the epoch without logging it never sends it)
        return got, missing

    def _train(self) -> list[str]:
        if self.role is None or self.batches is None:
            raise NodeError("the owner lost its alignment: a restarted owner cannot go on (a known limit)")
        self._dropped()
        e = self.task.epoch()
        if self.task.owner_epochs() > e:  # committed: waiting for parties, or timing them out
            return self._timeouts(lambda n: self.task.party(self.spec.member(n).address).epochs_done <= e)
        if self.cursor[0] != e:
            self.cursor, self.losses, self.epoch_started = (e, 0), [], time.perf_counter()
        steps = self.batches.epoch(e)
        stat, did = f"epoch {e + 1}", list[str]()
        while True:
            s = self.cursor[1]
            if s < len(steps):
                got, missing = self._embeddings(e, s, len(steps[s]))
                if missing:
                    if len(self._overdue(missing, e, s)) < len(missing):
                        return did  # still waiting for someone
                    did.append(f"step {e + 1}.{s}: went on without {', '.join(missing)} (silent for half a window)")
                loss, grads = self.role.step(steps[s], got)
                self.losses.append(loss)
                for n, g in grads.items():
                    self._send(n, Kind.GRADIENT, e, s, lambda: g, stat)  # noqa: B023
                did.append(f"step {e + 1}.{s}: loss {loss:.4f}, gradients sent")
                self.cursor = (e, s + 1)
                continue
            last = e + 1 == self.spec.model.epochs
            valid, missing = self._embeddings(e, s, len(self.batches.valid))
            test, missing_test = self._embeddings(e, s + 1, len(self.batches.test)) if last else ({}, [])
            if missing or missing_test:
                waiting = sorted(set(missing) | set(missing_test))
                if len(self._overdue(waiting, e, s)) < len(waiting):
                    return did
                did.append(f"epoch {e + 1}: went on without {', '.join(waiting)}'s validation embeddings")
            self.valid, self.test = valid, test
            valid_auc = self.role.auc(self.batches.valid, valid)
            self.role.close_epoch()
            self._account(stat, self.task.commit_epoch(self.account, e, self.outbox.close_epoch()))
            self.rounds.append(
                {
                    "epoch": e + 1,
                    "loss": round(float(np.mean(self.losses)), 6),
                    "valid_auc": round(valid_auc, 6),
                    "seconds": round(time.perf_counter() - self.epoch_started, 3),
                }
            )
            return [*did, f"epoch {e + 1}: loss {self.rounds[-1]['loss']:.4f}, valid AUC {valid_auc:.4f}, committed"]

    def _settle(self) -> list[str]:
        assert self.role is not None and self.batches is not None
        self._dropped()
        phi, table = self.role.value(self.batches.valid, self.valid)
        active = [n not in self.role.silent for n in self.spec.names]
        shares = shares_bps([phi.get(n, 0.0) for n in self.spec.names], active)
        doc = table_bytes([n for n in self.spec.names if n not in self.role.silent], table, phi)
        if self.model_path is not None:
            still_in = [n for n in self.spec.names if n not in self.role.silent]
            save_model(self.model_path, self.ident, self.name, self.role.top.net, self.role.fallback, still_in)
        self._account(
            "settle", self.task.settle(self.account, hashlib.sha256(doc).digest(), self.store.put(doc), shares)
        )
        self.outcome = {
            "federated_auc": self.role.auc(self.batches.test, self.test),
            "shapley": phi,
            "shares": dict(zip(self.spec.names, shares, strict=True)),
            "coalitions": table,
        }
        return ["valued the parties and paid the bounty by their shares"]
