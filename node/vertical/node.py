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

A member with a state file (`node.vertical.state`; the daemon always has one)
saves what it cannot read back from the chain after each step, and before it
sends anything that depends on fresh randomness (PSI secrets, sample ids). A
member that restarts takes it up and replays from there: sending is once per
place (a message logged before the crash is not sent again), an epoch's root
is of the messages the chain shows it logged, and every step is deterministic
given the state and the messages on chain, so the task ends as if it had not
stopped.
A member whose state file is gone after its PSI began says so and stops.
Once training ends each member keeps its trained part for scoring
(`node.vertical.model`), and once the task is paid out the state file is
deleted.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
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
from node.vertical.limits import MAX_QUERY
from node.vertical.messages import (
    MessageError,
    decode_matches,
    decode_matrix,
    encode_reply,
    matches_size,
    matrix_size,
    merkle_root,
)
from node.vertical.model import PartyModel, load_party_model, save_model
from node.vertical.party import FeatureParty, OwnerParty
from node.vertical.psi import MAX_SET, POINT, Alignment, PsiError, PsiParty, point_count, task_tag
from node.vertical.shapley import shares_bps, table_bytes
from node.vertical.spec import TaskSpec
from node.vertical.split import Batches
from node.vertical.state import StateFile, load_module, load_optimizer, module_arrays, optimizer_arrays

__all__ = ["MAX_PSI", "Malformed", "OwnerNode", "PartyNode", "TaskMember"]

MAX_PSI = 16 + POINT * MAX_SET + 16 * MAX_SET  # the largest PSI or alignment message (points and sample ids)
_MAX_SEQ = MAX_SET + 2  # no epoch has more steps than rows (plus the validation and test embeddings)
_Key = tuple[str, int, int, int]  # (the other member, kind, epoch, seq)
_SCORING = (int(Kind.QUERY), int(Kind.REPLY))  # once paid: epoch is the request number, seq its step


def _bytes_array(values: Sequence[bytes], width: int) -> npt.NDArray[np.uint8]:
    """Byte strings of one width as a (n, width) array (for a state file)."""
    return np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), width)


def _alignment_arrays(prefix: str, alignment: Alignment | None) -> dict[str, npt.NDArray[Any]]:
    if alignment is None:
        return {}
    return {
        prefix + "ids": _bytes_array(list(alignment.rows), 16),
        prefix + "rows": np.array(list(alignment.rows.values()), dtype=np.int64),
    }


def _alignment_from(prefix: str, arrays: Mapping[str, npt.NDArray[Any]]) -> Alignment | None:
    if prefix + "ids" not in arrays:
        return None
    ids, rows = arrays[prefix + "ids"], arrays[prefix + "rows"]
    return Alignment({bytes(i): int(r) for i, r in zip(ids, rows, strict=True)})


def _outcome_json(outcome: Mapping[str, Any]) -> dict[str, Any] | None:
    if not outcome:
        return None
    table = [[sorted(c), v] for c, v in outcome["coalitions"].items()]
    return {**outcome, "coalitions": table}


def _outcome_from(doc: Mapping[str, Any] | None) -> dict[str, Any]:
    if not doc:
        return {}
    return {**doc, "coalitions": {frozenset(c): float(v) for c, v in doc["coalitions"]}}


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
        state: StateFile | None = None,
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
        self.state = state  # where the working state is kept, to go on after a restart (None: memory only)
        self.tag = task_tag(task.chain.chain_id, task.address, 0)
        self.inbox: dict[_Key, dict[str, Any]] = {}
        self.posted: set[_Key] = set()
        self.logged: dict[_Key, bytes] = {}  # the first digest logged at each of this member's places, in log order
        self.sent: dict[_Key, bytes] = {}  # what this process sent, in order (the log may not show it yet)
        self.rejected: Counter[str] = Counter()  # malformed messages received, by sender
        self.stats: dict[str, Counter[str]] = defaultdict(Counter)  # "psi", "epoch 1", ... -> bytes, gas, messages
        self.done = False
        self.over = False  # the task is paid or cancelled: nothing to keep for a restart
        self._keys: dict[str, bytes] = {}
        self._opened: dict[_Key, bytes | Malformed] = {}
        self._seen = 0  # Message events read so far
        self._secrets_ok = False  # this process's PSI secrets are those of its PSI messages (or there are none)
        self._static_version, self._static_saved = 1, 0

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
                self.logged.setdefault((recipient, *place), bytes(a["digest"]))

    def _context(self, sender: str, recipient: str, kind: Kind, epoch: int, seq: int) -> Context:
        addresses = self.spec.member(sender).address, self.spec.member(recipient).address
        return Context(self.task.chain.chain_id, self.task.address, *addresses, kind.name.lower(), epoch, seq)

    def _account(self, stat: str, receipt: Mapping[str, Any]) -> None:
        self.stats[stat]["gas"] += int(receipt["gasUsed"])

    def _send(self, to: str, kind: Kind, epoch: int, seq: int, make: Callable[[], bytes], stat: str) -> bool:
        """Seal what `make()` returns to `to`, store it, log it; once per place (False: sent before, maybe
        by this member before a restart)."""
        place = (to, int(kind), epoch, seq)
        if place in self.posted:
            return False
        if to not in self._keys:
            self._keys[to] = self.task.encryption_key(self.spec.member(to).address)
        sealed = seal(make(), self._keys[to], self._context(self.name, to, kind, epoch, seq))
        cid = self.store.put(sealed)
        digest = hashlib.sha256(sealed).digest()
        self._account(stat, self.task.post(self.account, self.spec.member(to).address, kind, epoch, seq, digest, cid))
        self.stats[stat]["bytes"] += len(sealed)
        self.stats[stat]["messages"] += 1
        self.posted.add(place)
        self.sent[place] = digest
        return True

    def _epoch_root(self, epoch: int) -> bytes:
        """The Merkle root of the training messages this member logged in `epoch`, in log order: what its
        recipients read (the first logged at each place), then whatever it sent that the log does not show
        yet. Read from the chain, so a member that restarted commits what it logged in its former life."""
        self._scan()
        kinds = (int(Kind.EMBEDDING), int(Kind.GRADIENT))
        first = [d for p, d in self.logged.items() if p[2] == epoch and p[1] in kinds]
        later = [d for p, d in self.sent.items() if p[2] == epoch and p[1] in kinds and p not in self.logged]
        return merkle_root(first + later)

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
        self.done = self.over = True
        owed = self.task.owed(self.address)
        if owed:
            self.task.claim(self.account)
        if self.state is not None:  # the task is over and paid out: its secrets need not stay on disk
            self.state.remove()
        return [f"claimed {owed / 10**18:g} tokens"] if owed else []

    # -- the working state ------------------------------------------------------

    def save(self) -> None:
        """Keep what a restart needs (nothing without a state file, or once the task is over); the static
        part (PSI secrets and results, the alignment) only when it changed."""
        if self.state is None or self.over:
            return
        meta, arrays = self._state()
        static = self._static() if self._static_version != self._static_saved else None
        meta = {"task": self.ident, "name": self.name, "secrets_ok": self._secrets_ok, **meta}
        self.state.save(meta, arrays, static)
        self._static_saved = self._static_version

    def _changed(self) -> None:
        """The static part changed: the next save writes it."""
        self._static_version += 1

    def _restore_from(self, state: StateFile | None) -> bool:
        """Take up the saved state, if there is one for this task and member; True if there was."""
        saved = state.load() if state is not None else None
        if state is None or saved is None:
            return False
        meta, arrays = saved
        if meta.get("task") != self.ident or meta.get("name") != self.name:
            raise NodeError(f"{state.path}: the state of another task or member")
        try:
            self._restore(meta, arrays)
        except (KeyError, IndexError, AttributeError, ValueError, TypeError, RuntimeError) as exc:
            raise NodeError(f"{state.path}: a damaged member state ({exc})") from None
        self._secrets_ok = bool(meta.get("secrets_ok"))
        self._static_saved = self._static_version
        return True

    def _check_secrets(self, took_part: bool) -> None:
        """Before the first PSI message of this process: refuse to go on with PSI secrets that are not the
        ones this member's PSI messages on chain were made with (its state file was lost); then keep them."""
        if self._secrets_ok:
            return
        if took_part:
            raise NodeError(
                f"{self.name} took part in this task's PSI with secrets it no longer has (its state file is gone): "
                "it cannot go on"
            )
        self._secrets_ok = True
        self._changed()
        self.save()

    def step(self) -> list[str]:
        """Whatever is due now (a line for each thing done), kept in the state file if anything was."""
        did = self._step()
        if did:
            self.save()
        return did

    def _step(self) -> list[str]:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        raise NotImplementedError

    def _static(self) -> dict[str, npt.NDArray[Any]]:
        raise NotImplementedError

    def _restore(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        raise NotImplementedError


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
        self.resumed = self._restore_from(self.state)

    @property
    def owner(self) -> str:
        return self.spec.owner.name

    def _static(self) -> dict[str, npt.NDArray[Any]]:
        if self.alignment is not None:  # aligned: the PSI's secret is of no more use
            return _alignment_arrays("align/", self.alignment)
        secret, order = self.psi.export()
        return {"psi/secret": np.frombuffer(secret, dtype=np.uint8), "psi/order": np.array(order, dtype=np.int64)}

    def _state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        arrays: dict[str, npt.NDArray[Any]] = {}
        meta: dict[str, Any] = {"cursor": list(self.cursor), "awaiting": self.awaiting}
        if self.role is not None:
            opt, groups = optimizer_arrays("opt/", self.role.bottom.opt)
            arrays.update(module_arrays("net/", self.role.bottom.net), **opt)
            meta["groups"] = groups
        return meta, arrays

    def _restore(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        if "psi/secret" in arrays:
            secret, order = bytes(arrays["psi/secret"]), arrays["psi/order"].tolist()
            self.psi = PsiParty.resume(self.ids, self.tag, secret, order)
        self.alignment = _alignment_from("align/", arrays)
        self.cursor, self.awaiting = (int(meta["cursor"][0]), int(meta["cursor"][1])), bool(meta["awaiting"])
        if self.alignment is not None:
            self.batches = Batches.of(list(self.alignment.rows), self.spec.model)
            self.role = FeatureParty(self.name, self.x, self.alignment, self.spec.model)
            if "groups" in meta:
                load_module("net/", self.role.bottom.net, arrays)
                load_optimizer("opt/", self.role.bottom.opt, arrays, meta["groups"])
            if self.awaiting:  # the embedding sent for the step under way: computed again, to take its gradient
                e, s = self.cursor
                self.role.forward(self.batches.epoch(e)[s])

    def _step(self) -> list[str]:
        stage = self.task.stage()
        if stage in (Stage.VALUING, Stage.PAID) and self.model is None and self.role is not None:
            self._keep_model()
        if stage == Stage.PAID and self.serve and not self.task.party(self.address).dropped:
            did = self._claim() if not self.over else []
            self.done = False  # serving until stopped
            return [*did, *self._serve()]
        if stage in (Stage.PAID, Stage.CANCELLED):
            return self._claim()
        info = self.task.party(self.address)
        if stage == Stage.OPEN and not info.joined:
            self.task.join(self.account, self.key.public)
            return ["joined"]
        if info.dropped:  # its stake (what is left of it) back, and done
            return self._claim()
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
        if self.role is not None:  # aligned in this life or a former one
            if confirmed:
                return []
            size = self.task.intersection()
            self._account("psi", self.task.confirm(self.account, size))
            return [f"confirmed {size} aligned customers"]
        self._check_secrets((self.owner, int(Kind.PSI), 0, 0) in self.posted)
        did = []
        try:
            if self._send(self.owner, Kind.PSI, 0, 0, self.psi.blinded, "psi"):
                self._changed()  # the order its ids went in
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
                if not self.psi.order:  # sent before a restart saved where each id went: the secret says again
                    self.psi.blinded()
                    self._changed()
                alignment = Alignment.receive(message, size, self.psi.order)
                batches = Batches.of(list(alignment.rows), self.spec.model)
                self.alignment, self.batches = alignment, batches
                self.role = FeatureParty(self.name, self.x, alignment, self.spec.model)
                self._changed()
                self.save()
                if not confirmed:
                    self._account("psi", self.task.confirm(self.account, size))
                return [*did, f"confirmed {size} aligned customers"]
        except StoreError:
            raise  # this member's own IPFS node is down: wait it out
        except (Malformed, NodeError) as exc:  # PsiError, SealError, too few rows to split: all NodeErrors
            return self._leave(str(exc))
        if size and self._deadline_near():  # the owner posted a size but no usable alignment reached us
            return self._leave("no alignment from the owner within the window")
        return did

    def _train(self, epochs_done: int) -> list[str]:
        if self.role is None:  # confirmed before a restart that lost the alignment: receive it again
            self._align(confirmed=True)
        role, batches = self.role, self.batches
        if role is None or batches is None:
            return []
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
                self._account(stat, self.task.commit_epoch(self.account, e, self._epoch_root(e)))
                self.cursor, self.awaiting = (e + 1, 0), False
                why = f"the owner's gradient {e + 1}.{s} never came; committed before the window ran out" if cut else ""
                return [*did, f"epoch {e + 1}: {s} steps, committed" + (f" ({why})" if why else "")]
            batch = steps[s]
            if not self.awaiting:
                embedding = role.forward(batch)  # even if sent before a restart: its gradient needs the graph
                if self._send(self.owner, Kind.EMBEDDING, e, s, lambda: embedding, stat):  # noqa: B023
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
            self.save()

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
        self.data, self.x, self.labels, self.sample_key = data, x, labels, sample_key
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
        self.closed: tuple[int, bytes] | None = None  # an epoch closed here whose commitment may not be on chain
        self.resumed = self._restore_from(self.state)

    def _static(self) -> dict[str, npt.NDArray[Any]]:
        arrays = _alignment_arrays("align/", self.alignment)
        if self.pairwise and not any(self.pairwise.values()):  # aligned on chain: the PSI is of no more use
            return arrays
        for n, psi in self.psis.items():
            secret, order = psi.export()
            arrays[f"psi/{n}/secret"] = np.frombuffer(secret, dtype=np.uint8)
            arrays[f"psi/{n}/order"] = np.array(order, dtype=np.int64)
        for n, points in self.party_double.items():
            arrays[f"double/{n}"] = _bytes_array(points, POINT)
        for n, shared in self.pairwise.items():
            arrays[f"pairwise/{n}/rows"] = np.array(list(shared), dtype=np.int64)
            arrays[f"pairwise/{n}/points"] = _bytes_array(list(shared.values()), POINT)
        return arrays

    def _state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        arrays: dict[str, npt.NDArray[Any]] = {}
        for which, got in (("valid", self.valid), ("test", self.test)):
            for n, e in got.items():
                if e is not None:
                    arrays[f"{which}/{n}"] = e
        meta: dict[str, Any] = {
            "aligned_with": sorted(self.pairwise),
            "excluded": self.excluded,
            "cursor": list(self.cursor),
            "losses": self.losses,
            "rounds": self.rounds,
            "got": {"valid": sorted(self.valid), "test": sorted(self.test)},
            "waits": [[*k, v] for k, v in self._waits.items()],
            "absent": sorted(self._absent),
            "closed": [self.closed[0], self.closed[1].hex()] if self.closed else None,
            "outcome": _outcome_json(self.outcome),
        }
        if self.role is not None:
            role = self.role
            opt, groups = optimizer_arrays("opt/", role.top.opt)
            arrays.update(module_arrays("net/", role.top.net), **opt)
            arrays.update({f"fallback/{p}": v for p, v in role.fallback.items()})
            arrays.update({f"sums/{p}": v for p, v in role.sums.items()})
            meta.update(groups=groups, counts=role.counts, silent=sorted(role.silent))
        return meta, arrays

    def _restore(self, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> None:
        ids = self.data.ids
        self.pairwise = {n: {} for n in meta["aligned_with"]}
        for n in self.spec.names:
            if f"psi/{n}/secret" in arrays:
                secret, order = bytes(arrays[f"psi/{n}/secret"]), arrays[f"psi/{n}/order"].tolist()
                self.psis[n] = PsiParty.resume(ids, self.tag, secret, order)
            if f"double/{n}" in arrays:
                self.party_double[n] = [bytes(p) for p in arrays[f"double/{n}"]]
            if f"pairwise/{n}/rows" in arrays:
                rows, points = arrays[f"pairwise/{n}/rows"], arrays[f"pairwise/{n}/points"]
                self.pairwise[n] = {int(r): bytes(p) for r, p in zip(rows, points, strict=True)}
        self.excluded = dict(meta["excluded"])
        self.cursor = (int(meta["cursor"][0]), int(meta["cursor"][1]))
        self.losses, self.rounds = list(meta["losses"]), list(meta["rounds"])
        self.valid = {n: arrays.get(f"valid/{n}") for n in meta["got"]["valid"]}
        self.test = {n: arrays.get(f"test/{n}") for n in meta["got"]["test"]}
        self._waits = {(str(w[0]), int(w[1]), int(w[2])): int(w[3]) for w in meta["waits"]}
        self._absent = {(str(a[0]), int(a[1])) for a in meta["absent"]}
        self.closed = (int(meta["closed"][0]), bytes.fromhex(meta["closed"][1])) if meta["closed"] else None
        self.outcome = _outcome_from(meta["outcome"])
        self.alignment = _alignment_from("align/", arrays)
        if self.alignment is not None:
            self.batches = Batches.of(list(self.alignment.rows), self.spec.model)
            self.role = OwnerParty(self.x, self.labels, self.alignment, self.spec.names, self.spec.model)
            if "groups" in meta:
                load_module("net/", self.role.top.net, arrays)
                load_optimizer("opt/", self.role.top.opt, arrays, meta["groups"])
                self.role.fallback = {p: np.array(arrays[f"fallback/{p}"]) for p in self.spec.names}
                self.role.sums = {p: np.array(arrays[f"sums/{p}"]) for p in self.spec.names}
                self.role.counts = {p: int(meta["counts"][p]) for p in self.spec.names}
                self.role.silent = set(meta["silent"])

    def _step(self) -> list[str]:
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
            if any(self.pairwise.values()) or self.party_double:  # aligned on chain: done with the PSI
                self.party_double.clear()
                self.pairwise = {n: {} for n in self.pairwise}
                self._changed()
            return self._timeouts(lambda n: not self.task.party(self.spec.member(n).address).confirmed)
        self._check_secrets(any((n, int(Kind.PSI), 0, 0) in self.posted for n in self.spec.names))
        for n in self._parties():
            if n in self.excluded or n in self.pairwise:
                continue
            self._changed()  # PSI progress: the static part changes
            try:
                if self._send(n, Kind.PSI, 0, 0, self.psis[n].blinded, "psi"):
                    did.append(f"sent {n} its blinded ids")
                theirs = self._receive(n, Kind.PSI, 0, 0, MAX_PSI)
                if theirs is not None and n not in self.party_double:  # kept here, never sent back
                    _, self.party_double[n] = self.psis[n].reblind(theirs, point_count(theirs, f"{n}'s set", MAX_SET))
                    self._opened.pop((n, int(Kind.PSI), 0, 0), None)  # done with it: free the memory
                mine_back = self._receive(n, Kind.PSI, 0, 1, MAX_PSI)
                if mine_back is not None and n in self.party_double:
                    if not self.psis[n].order:  # sent before a restart saved where each id went
                        self.psis[n].blinded()
                    self.pairwise[n] = self.psis[n].intersect(mine_back, self.party_double[n])
                    self._opened.pop((n, int(Kind.PSI), 0, 1), None)
                    did.append(f"shares {len(self.pairwise[n])} customers with {n}")
            except StoreError:
                raise  # this member's own IPFS node is down: wait it out
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
        list) and post the intersection size; or cancel when there is nothing to train on. The sample ids
        are kept before anything is sent: a restart sends the same ones."""
        if self.alignment is None:
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
            self.role = OwnerParty(self.x, self.labels, self.alignment, self.spec.names, self.spec.model)
            self.role.silent.update(n for n in self.spec.names if n not in self.pairwise)
            self._changed()
            self.save()
        sample_ids, rows = list(self.alignment.rows), list(self.alignment.rows.values())
        digests = []
        for n, shared in self.pairwise.items():
            where = {v: j for j, v in enumerate(self.party_double[n])}
            message = Alignment.message([(where[shared[r]], sid) for r, sid in zip(rows, sample_ids, strict=True)])
            self._send(n, Kind.ALIGNMENT, 0, 0, lambda: message, "psi")  # noqa: B023 (called at once)
            digests.append(hashlib.sha256(message).digest())
        self._account("psi", self.task.align(self.account, len(rows), merkle_root(digests)))
        self.party_double.clear()  # done with the PSI: only who took part is kept
        self.pairwise = {n: {} for n in self.pairwise}
        self._changed()
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
        before = len(self._waits), len(self._absent)
        late = [n for n in names if now - self._waits.setdefault((n, e, seq), now) > self.spec.terms.window // 2]
        self._absent.update((n, e) for n in late)
        if (len(self._waits), len(self._absent)) != before:  # kept before anything it decides is sent
            self.save()
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
            raise NodeError("the owner has no alignment for this task (its state file is gone): it cannot go on")
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
                self.save()
                continue
            if self.closed is not None and self.closed[0] == e:  # closed before a restart: commit it
                self._account(stat, self.task.commit_epoch(self.account, e, self.closed[1]))
                return [*did, f"epoch {e + 1}: committed"]
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
            self.closed = (e, self._epoch_root(e))
            self.rounds.append(
                {
                    "epoch": e + 1,
                    "loss": round(float(np.mean(self.losses)), 6),
                    "valid_auc": round(valid_auc, 6),
                    "seconds": round(time.perf_counter() - self.epoch_started, 3),
                }
            )
            self.save()  # the closed epoch first: a restart commits it, it does not close it twice
            self._account(stat, self.task.commit_epoch(self.account, e, self.closed[1]))
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
        self.outcome = {
            "federated_auc": self.role.auc(self.batches.test, self.test),
            "shapley": phi,
            "shares": dict(zip(self.spec.names, shares, strict=True)),
            "coalitions": table,
        }
        self.save()
        self._account(
            "settle", self.task.settle(self.account, hashlib.sha256(doc).digest(), self.store.put(doc), shares)
        )
        return ["valued the parties and paid the bounty by their shares"]
