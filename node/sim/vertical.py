"""`fedchain demo --vertical`: a cross-domain task on the embedded default, in one process.

One CSV is split by columns into parties (the first is the task owner and holds
the labels); each party keeps a random share (`overlap`) of the customers, so
the parties' rows overlap partially, and every customer gets a random id (or
keeps the file's `--id` column). Then every party runs its step machine
(`node.vertical.node`, what a daemon runs) against the embedded chain and store,
in turn:

1. the owner deploys a VerticalTask, escrows the bounty, the parties stake;
2. private set intersection with each party, the intersection size posted and
   confirmed;
3. split learning for `rounds` epochs: each batch's embeddings and gradients;
4. the embeddings of the validation and test rows; the owner measures each
   party's Shapley value on the validation rows, stores the coalition table,
   and settles: the bounty is paid by the shares.

Every message is sealed to its recipient, stored, and logged on chain (where
its recipient finds it); each member commits an epoch's Merkle root.

Beside the federated model, on the same test rows (aligned customers the
owner set aside): the owner alone (its own columns, same model family, trained
on all its customers outside the test rows) and a centralized model (every
column pooled, the same training rows as the federation). A party listed in
`silent` stops answering from that epoch (1 = the first): chain time moves on
by a window, the owner times it out on chain (half its stake slashed), and the
task goes on with its embedding replaced by a constant.

The schema (scaling, vocabularies) is inferred from the whole file: a
simulation shortcut, as in the horizontal demo.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.chain import Chain, embedded_chain
from ledger.client import TokenClient
from ledger.deploy import deploy_contract
from ledger.spec import TOKEN_UNIT
from ledger.vertical import Kind, Stage, VerticalTaskClient, deploy_task
from node.datasets import DEFAULT_DATA
from node.errors import NodeError
from node.learn.data import DataError, Dataset, Schema, encode_labels, infer_schema, read_rows
from node.learn.model import ModelSpec, TrainConfig, auc, predict, train_rounds
from node.privacy.seal import SealKey
from node.store import EmbeddedStore
from node.vertical.daemon import measured_by, sample_key
from node.vertical.data import PartyData, check_disjoint
from node.vertical.model import OwnerModel
from node.vertical.node import OwnerNode, PartyNode
from node.vertical.party import encode_party
from node.vertical.scoring import Scorer
from node.vertical.spec import Member, TaskSpec, TermsSpec
from node.vertical.split import SplitSpec

__all__ = [
    "ADULT_PARTIES",
    "BANK_PARTIES",
    "Setup",
    "TaskRun",
    "VerticalConfig",
    "run_vertical_demo",
    "split_parties",
    "summary",
]

# The bundled bank data as a campaign owner, a demographics party and a finance party.
BANK_PARTIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("campaign", ("contact", "day", "month", "campaign", "pdays", "previous", "poutcome")),
    ("demographics", ("age", "job", "marital", "education")),
    ("finance", ("default", "balance", "housing", "loan")),
)
# UCI Adult as a retailer (demographics; the labels), an employment party and a finance party; the census
# weight `fnlwgt` and `education-num` (a copy of `education`) are left out.
ADULT_PARTIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("retailer", ("age", "sex", "race", "native-country", "marital-status", "relationship")),
    ("employment", ("workclass", "occupation", "hours-per-week", "education")),
    ("finance", ("capital-gain", "capital-loss")),
)
WINDOW = 3600


@dataclass(frozen=True)
class VerticalConfig:
    data: Path = DEFAULT_DATA
    target: str = "y"
    positive: str = "yes"
    parties: tuple[tuple[str, tuple[str, ...]], ...] = BANK_PARTIES
    id_column: str | None = None
    overlap: float = 0.8
    rounds: int = 10
    model: str = "logreg"
    seed: int = 0
    min_intersection: int = 100
    bounty: int = 900
    stake: int = 100
    slash_bps: int = 5_000
    silent: Mapping[str, int] = field(default_factory=dict)  # party -> the epoch it stops answering from
    garbling: Mapping[str, int] = field(default_factory=dict)  # party -> the epoch its embeddings turn to NaN

    def split_spec(self) -> SplitSpec:
        return SplitSpec(kind=self.model, epochs=self.rounds, seed=self.seed)


def _schema_part(schema: Schema, columns: Sequence[str], where: str) -> Schema:
    unknown = [c for c in columns if c not in schema.numeric and c not in schema.categorical]
    if unknown:
        raise DataError(f"{where}: column {unknown[0]!r} is not a feature of the data (the target, an id, or left out)")
    return schema.restricted(columns)


def split_parties(cfg: VerticalConfig) -> tuple[list[PartyData], npt.NDArray[np.float32], Schema]:
    """The file's customers as the parties see them: each keeps a random `overlap` share of the rows,
    its own columns, and an id per customer; returns the parties, the owner's labels and the schema of
    every party's columns."""
    if not 0 < cfg.overlap <= 1:
        raise NodeError(f"--overlap {cfg.overlap}: expected a share in (0, 1]")
    if len(cfg.parties) < 2:
        raise NodeError("a vertical task needs the owner and at least one feature party (--party twice)")
    names = [n for n, _ in cfg.parties]
    if len(set(names)) != len(names):
        raise NodeError(f"party names repeat: {names}")
    check_disjoint({n: cols for n, cols in cfg.parties})
    drop = [cfg.id_column] if cfg.id_column else []
    drop += ["duration"] if cfg.data == DEFAULT_DATA else []
    schema, _warnings = infer_schema(cfg.data, cfg.target, cfg.positive, drop=drop)
    header, body = read_rows(cfg.data)
    if cfg.id_column is not None:
        if cfg.id_column not in header:
            raise DataError(f"{cfg.data}: no id column {cfg.id_column!r} (columns: {', '.join(header)})")
        ids = [r[header.index(cfg.id_column)].strip() for r in body]
    else:
        rng = np.random.Generator(np.random.PCG64([cfg.seed, 1]))
        ids = [bytes(rng.integers(0, 256, 12, dtype=np.uint8)).hex() for _ in body]
    col = {c: i for i, c in enumerate(header)}
    parties, parts = [], {}
    labels: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
    for k, (name, columns) in enumerate(cfg.parties):
        parts[name] = _schema_part(schema, columns, f"party {name!r}")
        keep = np.random.Generator(np.random.PCG64([cfg.seed, 2, k])).random(len(body)) < cfg.overlap
        rows = [r for r, kept in zip(body, keep, strict=True) if kept]
        party_ids = [i for i, kept in zip(ids, keep, strict=True) if kept]
        parties.append(
            PartyData(name, party_ids, list(columns), [[r[col[c]] for c in columns] for r in rows], cfg.data)
        )
        if k == 0:
            labels = encode_labels(cfg.data, [r[col[cfg.target]] for r in rows], cfg.target, cfg.positive)
    used = {c for _, cols in cfg.parties for c in cols}
    return parties, labels, _schema_part(schema, sorted(used), "the parties")


def _baseline(
    kind: str,
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.float32],
    x_test: npt.NDArray[np.float32],
    y_test: npt.NDArray[np.float32],
    spec: SplitSpec,
) -> float:
    """A model of the same family trained in one place (node.learn), its AUC on the test rows."""
    mspec = ModelSpec(kind, x_train.shape[1], hidden=spec.hidden, seed=spec.seed)
    cfg = TrainConfig(epochs=1, batch_size=spec.batch_size, lr=spec.lr, optimizer="adam", seed=spec.seed)
    data = Dataset(x_train, y_train, {}, {}, "baseline")
    params = train_rounds(mspec, cfg, data, spec.epochs)
    return auc(y_test, predict(mspec, params, x_test))


class _Garbling(PartyNode):
    """A party whose embeddings are all NaN from epoch `garble_from` on (an attacker, or a broken one)."""

    garble_from = 1

    def _send(self, to: str, kind: Kind, epoch: int, seq: int, make: Callable[[], bytes], stat: str) -> bool:
        if kind != Kind.EMBEDDING or epoch + 1 < self.garble_from:
            return super()._send(to, kind, epoch, seq, make, stat)

        def garbled() -> bytes:
            data = make()
            return data[:16] + np.full((len(data) - 16) // 4, np.nan, dtype="<f4").tobytes()

        return super()._send(to, kind, epoch, seq, garbled, stat)


@dataclass
class Setup:
    """A task ready to run: the parties' data, accounts and spec, the token and the deployed contract."""

    cfg: VerticalConfig
    chain: Chain
    data: dict[str, PartyData]
    labels: npt.NDArray[np.float32]
    spec: TaskSpec
    accounts: dict[str, LocalAccount]
    token: TokenClient
    task: VerticalTaskClient
    block: int
    before: dict[str, int]  # each party's balance before it staked (stakes come back: not rewards)

    @classmethod
    def deploy(cls, cfg: VerticalConfig, chain: Chain, window: int = WINDOW) -> Setup:
        parties, labels, schema = split_parties(cfg)
        accounts = {p.name: Account.create() for p in parties}
        for a in accounts.values():
            chain.fund(a.address, 10**21)
        owner_data = parties[0]
        owner = accounts[owner_data.name]
        token_address, _ = deploy_contract(
            chain, owner, "RewardToken", "Task", "TSK", 10**6 * TOKEN_UNIT, owner.address
        )
        spec = TaskSpec(
            owner=Member(owner_data.name, owner.address, tuple(owner_data.columns)),
            parties=tuple(Member(p.name, accounts[p.name].address, tuple(p.columns)) for p in parties[1:]),
            id_column=cfg.id_column or "customer",
            schema=schema,
            model=cfg.split_spec(),
            terms=TermsSpec(cfg.bounty, cfg.stake, cfg.min_intersection, window, cfg.slash_bps / 10_000, token_address),
        )
        token = TokenClient(chain, token_address)
        terms = spec.terms.on_chain(cfg.rounds)
        for n in spec.names:
            token.transfer(owner, accounts[n].address, terms.stake)
        before = {n: token.balance_of(accounts[n].address) for n in spec.names}
        task, block = deploy_task(chain, owner, token_address, spec.hash, [m.address for m in spec.parties], terms)
        return cls(cfg, chain, {p.name: p for p in parties}, labels, spec, accounts, token, task, block, before)

    @property
    def owner(self) -> PartyData:
        return self.data[self.spec.owner.name]

    @functools.cached_property
    def xs(self) -> dict[str, npt.NDArray[np.float32]]:
        """Each party's rows encoded with its part of the schema (once: the run and the baselines share them)."""
        return {n: encode_party(p, self.spec.part(n)) for n, p in self.data.items()}

    def banner(self, where: str) -> str:
        return (
            f"task {self.task.address} on {where}: owner {self.owner.name} ({len(self.owner.ids)} customers), "
            + "parties "
            + ", ".join(f"{n} ({len(self.data[n].ids)})" for n in self.spec.names)
            + f"; {self.cfg.model}, {self.cfg.rounds} epochs; every message sealed to its recipient (HPKE)"
        )

    def baselines(self, train_rows: Sequence[int], test_rows: Sequence[int]) -> tuple[float, float]:
        """The owner alone (its columns, all its customers outside the test rows) and every column pooled
        (the federation's training rows: the owner's rows matched to each party's by customer id), both
        on the federation's test rows (the owner's row numbers)."""
        xs, y, model = self.xs, self.labels, self.spec.model
        x_owner = xs[self.owner.name]
        alone = np.setdiff1d(np.arange(len(y)), np.array(test_rows))
        label_party = _baseline(model.kind, x_owner[alone], y[alone], x_owner[test_rows], y[test_rows], model)
        row_of = {n: {k: i for i, k in enumerate(self.data[n].ids)} for n in self.spec.names}

        def pooled(rows: Sequence[int]) -> npt.NDArray[np.float32]:
            ids = [self.owner.ids[r] for r in rows]
            return np.concatenate(
                [x_owner[list(rows)], *(xs[n][[row_of[n][k] for k in ids]] for n in self.spec.names)], axis=1
            )

        central = _baseline(
            model.kind, pooled(train_rows), y[list(train_rows)], pooled(test_rows), y[list(test_rows)], model
        )
        return label_party, central

    def document(
        self, psi: dict[str, Any], measured: Sequence[Mapping[str, Any]], devnet: bool = False
    ) -> dict[str, Any]:
        """The JSON document, from what every member measured (`daemon._measured`'s shape; the owner's first)."""
        owner_doc = measured[0]
        stats: dict[str, Counter[str]] = defaultdict(Counter)
        for m in measured:
            for k, v in m["stats"].items():
                stats[k].update(v)
        psi = {**psi, **{k: stats["psi"][k] for k in ("bytes", "messages", "gas")}}
        rounds = [
            {**r, **{k: stats[f"epoch {r['epoch']}"][k] for k in ("bytes", "messages", "gas")}}
            for r in owner_doc["rounds"]
        ]
        label_party_auc, centralized_auc = self.baselines(owner_doc["train_rows"], owner_doc["test_rows"])
        dropped = {n for n in self.spec.names if self.task.party(self.accounts[n].address).dropped}
        rewards = {
            n: (self.token.balance_of(self.accounts[n].address) - self.before[n]) / TOKEN_UNIT for n in self.spec.names
        }
        owner = self.owner
        return {
            "mode": "vertical",
            "devnet": devnet,
            "data": _portable(self.cfg.data),
            "task": self.task.address,
            "model": self.cfg.model,
            "overlap": self.cfg.overlap,
            "psi": psi,
            "rows": {"train": len(owner_doc["train_rows"]), "test": len(owner_doc["test_rows"])},
            "parties": [
                {
                    "name": owner.name,
                    "role": "owner",
                    "columns": list(owner.columns),
                    "rows": len(owner.ids),
                    "shapley": None,
                    "share_bps": None,
                    "reward": -float(self.cfg.bounty),
                }
            ]
            + [
                {
                    "name": n,
                    "role": "dropped" if n in dropped else "feature",
                    "columns": list(self.data[n].columns),
                    "rows": len(self.data[n].ids),
                    "shapley": round(owner_doc["shapley"].get(n, 0.0), 6),
                    "share_bps": owner_doc["shares"][n],
                    "reward": round(rewards[n], 6),
                    "rejected": owner_doc["rejected"].get(n, 0),  # its messages the owner refused as malformed
                }
                for n in self.spec.names
            ],
            "coalitions": [
                {"parties": c["parties"], "valid_auc": round(c["valid_auc"], 6)} for c in owner_doc["coalitions"]
            ],
            "rounds": rounds,
            "label_party_auc": round(label_party_auc, 6),
            "federated_auc": round(owner_doc["federated_auc"], 6),
            "centralized_auc": round(centralized_auc, 6),
        }


class TaskRun:
    """One task with every party in this process: one step machine per party, stepped in turn."""

    def __init__(self, setup: Setup, store: EmbeddedStore) -> None:
        self.setup, self.cfg, self.chain, self.task, self.spec = setup, setup.cfg, setup.chain, setup.task, setup.spec
        xs = setup.xs
        common: dict[str, Any] = {"task": setup.task, "store": store, "from_block": setup.block}
        owner = self.spec.owner.name
        self.owner = OwnerNode(
            self.spec,
            owner,
            setup.owner,
            xs[owner],
            setup.labels,
            sample_key=sample_key(self.cfg.seed),
            account=setup.accounts[owner],
            key=SealKey.generate(),
            **common,
        )
        self.parties = {
            n: (_Garbling if n in self.cfg.garbling else PartyNode)(
                self.spec, n, setup.data[n], xs[n], account=setup.accounts[n], key=SealKey.generate(), **common
            )
            for n in self.spec.names
        }
        for n, at in self.cfg.garbling.items():
            self.parties[n].garble_from = at  # type: ignore[attr-defined]

    def _answers(self, name: str) -> bool:
        """False for a party told to go silent, from its epoch until the task is over."""
        at = self.cfg.silent.get(name)
        if at is None:
            return True
        stage = self.task.stage()
        return stage in (Stage.PAID, Stage.CANCELLED) or (stage != Stage.VALUING and self.task.epoch() + 1 < at)

    def play(self, say: Callable[[str], None], progress: Callable[[str], None] = lambda _line: None) -> float:
        """Step every member in turn until all are done, telling `progress` each step; returns the PSI's
        seconds. When nobody can move (a party went silent), chain time moves on by a quarter window, as
        it would while the others wait."""
        nodes: list[tuple[str, OwnerNode | PartyNode]] = [(self.spec.owner.name, self.owner), *self.parties.items()]
        started, psi_seconds, stalls = time.perf_counter(), 0.0, 0
        while not all(node.done for _, node in nodes):
            moved = False
            for name, node in nodes:
                if node.done or not self._answers(name):
                    continue
                for line in node.step():
                    moved = True
                    progress(f"{self.task.stage().name.lower()}: {name}: {line}")
                    if name == self.spec.owner.name and ("epoch" in line or "timed out" in line):
                        say(f"  {line}")
            if not psi_seconds and self.task.intersection():
                psi_seconds = time.perf_counter() - started
            if moved:
                stalls = 0
                continue
            stalls += 1
            if stalls > 8:
                raise NodeError(f"the task is stuck in {self.task.stage().name.lower()}: no party can move")
            self.chain.advance_time(WINDOW // 4 + 1)
        return psi_seconds

    def score(self, rows: Sequence[int], say: Callable[[str], None]) -> dict[str, Any]:
        """Use the paid task's model: the owner scores customers (its test rows) through a scoring request
        to every party still in (node.vertical.scoring), and measures the AUC of those scores."""
        role = self.owner.role
        assert role is not None
        owner = self.setup.owner
        still_in = [n for n in self.spec.names if n not in role.silent]
        model = OwnerModel(role.top, role.fallback, self.spec.names, still_in)
        ids = [owner.ids[r] for r in rows]
        prospects = PartyData(owner.name, ids, owner.columns, owner.aligned(rows), owner.source)
        scorer = Scorer(
            self.spec,
            owner.name,
            model,
            prospects,
            self.setup.xs[owner.name][list(rows)],
            account=self.owner.account,
            task=self.task,
            store=self.owner.store,
            key=self.owner.key,
            from_block=self.setup.block,
        )
        for node in self.parties.values():
            node.serve = True
        serving = [n.step for n in self.parties.values() if n.name in model.active]
        scored = scorer.run(60.0, lambda _line: None, others=serving)
        for line in scored.lines():
            say(f"  {line}")
        logits = np.array([z for z in scored.logits if z is not None])
        labels = self.setup.labels[[r for r, z in zip(rows, scored.logits, strict=True) if z is not None]]
        return {
            "prospects": len(rows),
            "scored": len(logits),
            "held": scored.answered,
            "failed": scored.failed,
            "seconds": round(scored.seconds, 2),
            "auc": round(auc(labels, logits), 6) if len(logits) else None,
            "gas": scorer.stats["scoring"]["gas"] + sum(n.stats["scoring"]["gas"] for n in self.parties.values()),
        }


def run_vertical_demo(
    cfg: VerticalConfig,
    out: Callable[[str], None] | None = None,
    chain: Chain | None = None,
    store_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole task; returns the JSON document, printing the epochs through `out` and each party's
    step through `progress` (a terminal's status line). The store lives in a temporary directory unless
    `store_dir` is given (a test reads what an outsider could)."""
    say = out or (lambda _line: None)
    setup = Setup.deploy(cfg, chain or embedded_chain())
    say(setup.banner("the embedded chain"))
    with tempfile.TemporaryDirectory(prefix="fedchain-vertical-") as tmp:
        run = TaskRun(setup, EmbeddedStore(store_dir or Path(tmp) / "store"))
        psi_seconds = run.play(say, progress or (lambda _line: None))
        if setup.task.stage() == Stage.CANCELLED:
            raise NodeError(f"the task was cancelled: {setup.task.intersection() or 'too few'} shared customers")
        psi = {
            "owner_rows": len(setup.owner.ids),
            "intersection": setup.task.intersection(),
            "seconds": round(psi_seconds, 2),
        }
        measured = [measured_by(run.owner), *(measured_by(p) for p in run.parties.values())]
        doc = setup.document(psi, measured)
        doc["scoring"] = run.score(measured[0]["test_rows"], say)
    summary(doc, say)
    return doc


def _portable(path: Path) -> str:
    """`path` relative to the repository when it is inside it (result files name no machine's paths)."""
    root = DEFAULT_DATA.resolve().parents[2]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return path.name


def summary(doc: Mapping[str, Any], say: Callable[[str], None]) -> None:
    say(f"{'party':14} {'role':8} {'rows':>6} {'shapley':>8} {'share':>6} {'reward':>8}  columns")
    for p in doc["parties"]:
        shapley = "" if p["shapley"] is None else f"{p['shapley']:.4f}"
        share = "" if p["share_bps"] is None else f"{p['share_bps'] / 100:.1f}%"
        say(
            f"{p['name']:14} {p['role']:8} {p['rows']:>6} {shapley:>8} {share:>6} {p['reward']:>8.1f}  "
            + ", ".join(p["columns"])
        )
    say(
        f"test AUC on {doc['rows']['test']} shared customers: owner alone {doc['label_party_auc']:.4f}, "
        f"federated {doc['federated_auc']:.4f}, centralized {doc['centralized_auc']:.4f}"
    )
    scoring = doc.get("scoring")
    if scoring:
        say(
            f"then the owner scored those {scoring['prospects']} customers as prospects, asking the parties still "
            f"in (scoring request, {scoring['seconds']:.1f} s): AUC {scoring['auc']:.4f}"
        )
