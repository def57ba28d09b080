"""Scoring new customers with a vertical task's model, once the task is paid: `fedchain vertical score`.

The owner holds the top model; each feature party holds its bottom model and
its own columns, so scoring a prospect list takes the parties that are online.
Per party, request `r`, with a fresh secret a on the owner's side and two, b1
and b2, on the party's; every message sealed to its recipient and logged on
chain as `Query` or `Reply` (so the audit trail shows who scored when, and how
much was asked):

1. Query r.0, owner -> party: a*H(p) for each prospect p, sorted by value.
2. Reply r.0, party -> owner: b1*a*H(p) and b2*a*H(p), both in the order
   received, and b1*H(y) for each of its customers y, sorted by value.
3. Query r.1, owner -> party: for each prospect whose a*b1*H(y) matched (the
   party holds it), its position in the owner's list and b2*H(p), the owner's
   a taken off (times a's inverse).
4. Reply r.1, party -> owner: for each of those points that is one of its own
   b2*H(y), computed locally, the position and that customer's embedding by
   its trained bottom model.

The party decides which of its rows to embed from values it computes itself,
and the owner never sees anything times b2 but its own query: so the owner can
only obtain embeddings of customers whose ids it put in its query (whatever it
sends in step 3). The party learns which of its customers the owner asked
about (it must: it embeds them) and how many prospects there were; the owner
learns which of its prospects each party holds, and their embeddings, as in
training. Neither learns anything of the other's other customers. A party
answers at most `max_query` prospects per request (`--max-query`), and only the
newest request; only the task's owner can ask (the contract allows nothing
else).

A prospect a party does not hold, or every prospect when the party does not
answer within the wait, gets the fallback the spec names (`model.fallback`):
`mean`, the party's mean training embedding (as training used for a silent
party), or `none`, which leaves that prospect unscored. The output CSV has the
prospect's id, its score (the model's probability), its rank, and the parties
whose embedding was missing for it.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger.errors import ChainUnreachable, ContractRevert
from ledger.vertical import Kind, Stage
from node.errors import NodeError
from node.store import StoreError
from node.vertical.data import PartyData
from node.vertical.messages import MessageError, decode_reply, encode_matches, reply_size
from node.vertical.model import OwnerModel
from node.vertical.node import Malformed, TaskMember
from node.vertical.psi import MAX_SET, POINT, PsiError, PsiParty, decode_points, point_count, split_messages
from node.vertical.spec import TaskSpec

__all__ = ["Scored", "Scorer", "check_writable", "write_scores"]


@dataclass
class Scored:
    """A scoring request's outcome: per prospect, its logit (None: unscored) and the parties missing."""

    request: int
    ids: list[str]
    logits: list[float | None]
    missing: list[list[str]]
    answered: dict[str, int] = field(default_factory=dict)  # party -> how many prospects it held
    failed: dict[str, str] = field(default_factory=dict)  # party -> why it gave no embeddings
    seconds: float = 0.0

    @property
    def scores(self) -> list[float | None]:
        """The model's probabilities (a logistic of the logits, without overflow)."""
        return [None if z is None else float(np.exp(-np.logaddexp(0.0, -z))) for z in self.logits]

    def lines(self) -> list[str]:
        """What happened, for the user: each party's answer or why there was none."""
        out = [f"{n}: held {k} of the {len(self.ids)} prospects" for n, k in self.answered.items()]
        out += [f"{n}: {why}" for n, why in self.failed.items()]
        unscored = sum(z is None for z in self.logits)
        out.append(f"scored {len(self.ids) - unscored} of {len(self.ids)} prospects in {self.seconds:.1f} s")
        return out


class Scorer(TaskMember):
    """The owner's side of one scoring request, against every party still in the task."""

    def __init__(
        self,
        spec: TaskSpec,
        name: str,
        model: OwnerModel,
        prospects: PartyData,
        x: npt.NDArray[np.float32],
        **kw: Any,
    ) -> None:
        super().__init__(spec, name, **kw)
        if name != spec.owner.name:
            raise NodeError(f"only the task owner ({spec.owner.name}) scores with the task's model")
        width = self._own_width(model)
        if x.shape != (len(prospects.ids), width):
            raise NodeError(f"the prospects have {x.shape[1]} encoded columns, the model takes {width}")
        self.model, self.prospects, self.x = model, prospects, x
        self.request = -1
        self.psis: dict[str, PsiParty] = {}
        self.asked: set[str] = set()  # parties asked (Query r.0 logged)
        self.matched: dict[str, set[int]] = {}  # party -> the positions it holds (Query r.1 logged)
        self.got: dict[str, tuple[list[int], npt.NDArray[np.float32]]] = {}
        self.failed: dict[str, str] = {}
        self.started = time.perf_counter()

    def _own_width(self, model: OwnerModel) -> int:
        first = next(iter(model.top.net.parameters()))
        return int(first.shape[1]) - len(model.parties) * self.spec.model.embed

    @property
    def pending(self) -> list[str]:
        return [n for n in self.model.active if n not in self.got and n not in self.failed]

    def begin(self) -> int:
        """Open a new request (the next number after the owner's last query on chain)."""
        if self.task.stage() != Stage.PAID:
            raise NodeError(f"the task is {self.task.stage().name.lower()}: its model is used once it is paid")
        self._scan()
        asked = [e for (_, kind, e, _) in self.posted if kind == Kind.QUERY]
        self.request = max(asked, default=-1) + 1
        self.psis = {n: PsiParty(self.prospects.ids, self.tag) for n in self.model.active}  # fresh secrets
        self.asked, self.matched, self.got, self.failed = set(), {}, {}, {}
        self.started = time.perf_counter()
        return self.request

    def step(self) -> list[str]:
        """Whatever is due with each party that has not answered yet. A party's malformed message leaves it
        out of this request; an outage of this member's own chain or IPFS node is raised (to wait it out)."""
        r, did = self.request, list[str]()
        self._scan()
        for n in self.pending:
            if n not in self.asked and not self._send(n, Kind.QUERY, r, 0, self.psis[n].blinded, "scoring"):
                raise NodeError(f"another scoring request of this task ({r}) is under way: try again once it ends")
            if n not in self.asked:
                self.asked.add(n)
                did.append(f"asked {n} about {len(self.prospects.ids)} prospects")
            try:
                matches = self._matches(n) if n not in self.matched else None
                if matches is not None:
                    self._send(n, Kind.QUERY, r, 1, lambda: encode_matches(*matches), "scoring")  # noqa: B023
                    self.matched[n] = set(matches[0])  # once sent (an outage in between: computed again)
                    self._opened.pop((n, int(Kind.REPLY), r, 0), None)
                if n in self.matched and self._embeddings(n):
                    did.append(f"{n} sent the embeddings of {len(self.got[n][0])} prospects")
            except (Malformed, PsiError, MessageError) as exc:
                self.failed[n] = f"refused its reply ({exc})"
                did.append(f"left {n} out: {exc}")
        return did

    def _matches(self, n: str) -> tuple[list[int], list[bytes]] | None:
        """From party `n`'s first reply: the prospects it holds (positions in our list), each with its id
        blinded by the party's second secret alone (ours taken off); None until the reply is there."""
        asked, r, psi = len(self.prospects.ids), self.request, self.psis[n]
        data = self._receive(n, Kind.REPLY, r, 0, 3 * 16 + POINT * (2 * asked + MAX_SET))
        if data is None:
            return None
        what = f"{n}'s first scoring reply"
        try:
            first, second, theirs = split_messages(data, 3, what, max(MAX_SET, asked))
            once_first = decode_points(first, asked, what, validate=False)  # only compared
            once_second = decode_points(second, asked, what, validate=False)  # multiplied: libsodium checks
            _, twice = psi.reblind(theirs, point_count(theirs, f"{n}'s ids", MAX_SET))
        except (PsiError, MessageError) as exc:
            raise self._refuse((n, int(Kind.REPLY), r, 0), str(exc)) from None
        held = set(twice)
        positions = [i for i, v in enumerate(once_first) if v in held]
        return positions, psi.unblind([once_second[i] for i in positions], what)

    def _embeddings(self, n: str) -> bool:
        """Party `n`'s embeddings of the prospects it holds, once there (checked: only positions we matched)."""
        asked, embed, r = len(self.prospects.ids), self.spec.model.embed, self.request
        data = self._receive(n, Kind.REPLY, r, 1, reply_size(len(self.matched[n]), embed))
        if data is None:
            return False
        try:
            positions, embeddings = decode_reply(data, asked, embed, f"{n}'s scoring reply")
            if not set(positions) <= self.matched[n]:
                raise MessageError(f"{n}'s scoring reply names prospects it does not hold")
        except MessageError as exc:
            raise self._refuse((n, int(Kind.REPLY), r, 1), str(exc)) from None
        order = self.psis[n].order
        self.got[n] = ([order[p] for p in positions], embeddings)
        return True

    def give_up(self, why: str) -> None:
        for n in self.pending:
            self.failed[n] = why

    def result(self) -> Scored:
        """The scores: each party's embedding where it sent one, its fallback elsewhere (or none)."""
        rows, model = len(self.prospects.ids), self.model
        embeddings = {p: np.tile(model.fallback[p], (rows, 1)) for p in model.parties}
        missing: list[list[str]] = [[] for _ in range(rows)]
        for p in model.active:
            held = np.zeros(rows, dtype=bool)
            if p in self.got:
                at, values = self.got[p]
                embeddings[p][at] = values
                held[at] = True
            for i in np.flatnonzero(~held):
                missing[i].append(p)
        logits = model.top.scores(self.x, [embeddings[p] for p in model.parties])
        scored: list[float | None] = [float(z) for z in logits]
        if self.spec.model.fallback == "none":
            scored = [None if m else z for z, m in zip(scored, missing, strict=True)]
        return Scored(
            self.request,
            list(self.prospects.ids),
            scored,
            missing,
            {p: len(self.got[p][0]) for p in model.active if p in self.got},
            dict(self.failed),
            time.perf_counter() - self.started,
        )

    def run(
        self,
        wait: float,
        log: Callable[[str], None],
        stop: threading.Event | None = None,
        poll: float = 1.0,
        others: Sequence[Callable[[], Sequence[str]]] = (),
        begun: bool = False,
    ) -> Scored:
        """Begin a request (unless `begun`: `begin` opened it) and step it until every party answered or
        `wait` seconds passed. `others` are stepped too, in this thread (the demo's parties; a daemon runs
        in its own process)."""
        if not begun:
            r = self.begin()
            log(f"scoring request {r}: {len(self.prospects.ids)} prospects, {len(self.model.active)} parties")
        stop = stop or threading.Event()
        deadline = time.monotonic() + wait
        while self.pending and not stop.is_set():
            try:
                lines = self.step()
            except (ChainUnreachable, StoreError, ContractRevert) as exc:  # our own node is down: wait it out
                log(f"waiting: {exc}")
                stop.wait(poll)
                lines = []
            moved = [bool(other()) for other in others]  # each returns the lines it did (none: idle)
            for line in lines:
                log(line)
            if not self.pending:
                break
            if time.monotonic() > deadline:
                self.give_up(f"did not answer within {wait:g} s")
                break
            if not lines and not any(moved):
                self.task.chain.wait_for_block(min(poll, max(deadline - time.monotonic(), 0.01)), stop)
        if stop.is_set():
            self.give_up("had not answered when scoring was stopped")
        return self.result()


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output path that cannot be written."""
    if path.is_dir() or not path.parent.is_dir():
        raise NodeError(f"{path}: cannot write the scores there (not a file in an existing directory)")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise NodeError(f"{path}: cannot write the scores there (permission denied)")


def write_scores(path: Path, id_column: str, scored: Scored) -> None:
    """The scored prospects as CSV: id, score, rank (1 = the most likely, by the logit: probabilities
    round to 1 for the surest), the parties missing for it."""
    scores, logits = scored.scores, scored.logits
    order = sorted((i for i, z in enumerate(logits) if z is not None), key=lambda i: (-(logits[i] or 0.0), i))
    rank = {i: k + 1 for k, i in enumerate(order)}
    try:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow([id_column, "score", "rank", "missing"])
            for i, customer in enumerate(scored.ids):
                s = scores[i]
                w.writerow([customer, "" if s is None else f"{s:.6f}", rank.get(i, ""), ";".join(scored.missing[i])])
    except OSError as exc:
        raise NodeError(f"{path}: cannot write the scores ({exc.strerror})") from None
