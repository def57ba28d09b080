"""Scoring new customers with a vertical task's model, once the task is paid: `fedchain vertical score`.

The owner holds the top model; each feature party holds its bottom model and
its own columns, so scoring a prospect list takes the parties that are online.
Per party, with fresh secrets on both sides (request `r`, every message sealed
to its recipient and logged on chain as `Query` or `Reply`, so the audit trail
shows who scored when, and how much was asked):

1. Query r.0, owner -> party: a*H(p) for each prospect p, sorted by value.
2. Reply r.0, party -> owner: b*H(y) for each of its customers y, sorted by
   value. It keeps b*a*H(p) for each prospect, never sends it.
3. Query r.1, owner -> party: a*b*H(y), in the order received.
4. Reply r.1, party -> owner: for each of its customers whose a*b*H(y) is one
   of its b*a*H(p), the position of p in the owner's list, and the embedding
   of that customer by its trained bottom model.

So the party learns which of its customers the owner asked about (it must: it
embeds them) and how many prospects there were; the owner learns which of its
prospects the party holds and their embeddings, as it did for training. The
owner can only obtain embeddings of customers whose ids it knows: the party
decides which of its rows match, from its own secret. A party answers at most
`max_query` prospects per request (`--max-query`), and only the task's owner
can ask (the contract allows nothing else).

A prospect a party does not hold, or every prospect when the party does not
answer within the wait, gets the fallback the spec names (`model.fallback`):
`mean`, the party's mean training embedding (as training used for a silent
party), or `none`, which leaves that prospect unscored. The output CSV has the
prospect's id, its score (the model's probability), its rank, and the parties
whose embedding was missing for it.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger.vertical import Kind, Stage
from node.errors import NodeError
from node.vertical.data import PartyData
from node.vertical.messages import MessageError, decode_reply, reply_size
from node.vertical.model import OwnerModel
from node.vertical.node import MAX_PSI, Malformed, TaskMember
from node.vertical.psi import MAX_SET, PsiParty, point_count
from node.vertical.spec import TaskSpec

__all__ = ["Scored", "Scorer", "write_scores"]


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
        return [None if z is None else float(1 / (1 + np.exp(-z))) for z in self.logits]

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
        self.reblinded: set[str] = set()
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
        self.started = time.perf_counter()
        return self.request

    def step(self) -> list[str]:
        """Whatever is due with each party that has not answered yet."""
        r, did = self.request, list[str]()
        self._scan()
        for n in self.pending:
            try:
                if self._send(n, Kind.QUERY, r, 0, self.psis[n].blinded, "scoring"):
                    did.append(f"asked {n} about {len(self.prospects.ids)} prospects")
                theirs = self._receive(n, Kind.REPLY, r, 0, MAX_PSI)
                if theirs is not None and n not in self.reblinded:
                    back, _ = self.psis[n].reblind(theirs, point_count(theirs, f"{n}'s ids", MAX_SET))
                    self._send(n, Kind.QUERY, r, 1, lambda: back, "scoring")  # noqa: B023 (called at once)
                    self._opened.pop((n, int(Kind.REPLY), r, 0), None)
                    self.reblinded.add(n)
                asked, embed = len(self.prospects.ids), self.spec.model.embed
                reply = self._receive(n, Kind.REPLY, r, 1, reply_size(asked, embed))
                if reply is not None:
                    try:
                        positions, embeddings = decode_reply(reply, asked, embed, f"{n}'s scoring reply")
                    except MessageError as exc:
                        raise self._refuse((n, int(Kind.REPLY), r, 1), str(exc)) from None
                    order = self.psis[n].order
                    self.got[n] = ([order[p] for p in positions], embeddings)
                    did.append(f"{n} sent the embeddings of {len(positions)} prospects")
            except (Malformed, NodeError) as exc:
                self.failed[n] = f"refused its reply ({exc})"
                did.append(f"left {n} out: {exc}")
        return did

    def give_up(self, wait: float) -> None:
        for n in self.pending:
            self.failed[n] = f"did not answer within {wait:g} s"

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
    ) -> Scored:
        """Begin a request and step it until every party answered or `wait` seconds passed. `others` are
        stepped too, in this thread (the demo's parties; a daemon runs in its own process)."""
        log(f"scoring request {self.begin()}: {len(self.prospects.ids)} prospects, {len(self.model.active)} parties")
        return self.follow(wait, log, stop, poll, others)

    def follow(
        self,
        wait: float,
        log: Callable[[str], None],
        stop: threading.Event | None = None,
        poll: float = 1.0,
        others: Sequence[Callable[[], Sequence[str]]] = (),
    ) -> Scored:
        """Step the request `begin` opened until every party answered or `wait` seconds passed."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + wait
        while self.pending and not stop.is_set():
            lines = self.step()
            moved = [bool(other()) for other in others]  # each returns the lines it did (none: idle)
            for line in lines:
                log(line)
            if not self.pending:
                break
            if time.monotonic() > deadline:
                self.give_up(wait)
                break
            if not lines and not any(moved):
                self.task.chain.wait_for_block(min(poll, max(deadline - time.monotonic(), 0.01)), stop)
        return self.result()


def write_scores(path: Path, id_column: str, scored: Scored) -> None:
    """The scored prospects as CSV: id, score, rank (1 = the most likely), the parties missing for it."""
    scores = scored.scores
    order = sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: (-(scores[i] or 0.0), i))
    rank = {i: k + 1 for k, i in enumerate(order)}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([id_column, "score", "rank", "missing"])
        for i, customer in enumerate(scored.ids):
            s = scores[i]
            w.writerow([customer, "" if s is None else f"{s:.6f}", rank.get(i, ""), ";".join(scored.missing[i])])
