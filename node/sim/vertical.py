"""`fedchain demo --vertical`: a cross-domain task on the embedded default, in one process.

One CSV is split by columns into parties (the first is the task owner and holds
the labels); each party keeps a random share (`overlap`) of the customers, so
the parties' rows overlap partially, and every customer gets a random id (or
keeps the file's `--id` column). Then, on the embedded chain and store:

1. the owner deploys a VerticalTask, escrows the bounty, the parties stake;
2. private set intersection with each party, every message stored and logged on
   chain (`post`), the intersection size posted and confirmed;
3. split learning for `rounds` epochs: embeddings and gradients go through the
   store, each member commits each epoch's Merkle root of what it sent;
4. the parties send embeddings of the validation and test rows; the owner
   measures each party's Shapley value on the validation rows, stores the
   coalition table, and settles: the bounty is paid by the shares.

Beside the federated model, on the same test rows (aligned customers the
owner set aside): the owner alone (its own columns, same model family, trained
on all its customers outside the test rows) and a centralized model (every
column pooled, the same training rows as the federation). A party listed in
`silent` stops answering from that epoch: it is timed out on chain, slashed,
and the task goes on with its embedding replaced by a constant.

The schema (scaling, vocabularies) is inferred from the whole file: a
simulation shortcut, as in the horizontal demo.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger.chain import Chain, embedded_chain
from ledger.client import TokenClient
from ledger.deploy import deploy_contract
from ledger.spec import TOKEN_UNIT
from ledger.vertical import Kind, TaskTerms, VerticalTaskClient, deploy_task
from node.datasets import DEFAULT_DATA
from node.errors import NodeError
from node.learn.data import DataError, Dataset, Schema, encode_labels, infer_schema, read_rows
from node.learn.model import ModelSpec, TrainConfig, auc, predict, train_rounds
from node.privacy.seal import OVERHEAD, Context, SealKey, seal
from node.store import EmbeddedStore
from node.vertical.data import PartyData, check_disjoint
from node.vertical.messages import Outbox, merkle_root
from node.vertical.party import FeatureParty, OwnerParty, encode_party
from node.vertical.psi import align_in_memory, task_tag
from node.vertical.shapley import shares_bps, table_bytes
from node.vertical.split import Batches, SplitSpec

__all__ = ["BANK_PARTIES", "VerticalConfig", "run_vertical_demo", "split_parties"]

# The bundled bank data as a campaign owner, a demographics party and a finance party.
BANK_PARTIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("campaign", ("contact", "day", "month", "campaign", "pdays", "previous", "poutcome")),
    ("demographics", ("age", "job", "marital", "education")),
    ("finance", ("default", "balance", "housing", "loan")),
)
WINDOW = 3600
MAX_PSI_MESSAGE = 64 * 2**20


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

    def split_spec(self) -> SplitSpec:
        return SplitSpec(kind=self.model, epochs=self.rounds, seed=self.seed)


def _schema_part(schema: Schema, columns: Sequence[str], where: str) -> Schema:
    unknown = [c for c in columns if c not in schema.numeric and c not in schema.categorical]
    if unknown:
        raise DataError(f"{where}: column {unknown[0]!r} is not a feature of the data (the target, an id, or left out)")
    return Schema(
        schema.target,
        schema.positive,
        {c: schema.numeric[c] for c in columns if c in schema.numeric},
        {c: schema.categorical[c] for c in columns if c in schema.categorical},
    )


def split_parties(cfg: VerticalConfig) -> tuple[list[PartyData], npt.NDArray[np.float32], dict[str, Schema]]:
    """The file's customers as the parties see them: each keeps a random `overlap` share of the rows,
    its own columns, and an id per customer; returns the parties, the owner's labels and each party's
    part of the schema."""
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
    return parties, labels, parts


@dataclass
class _Wire:
    """Every message sealed to its recipient (its key as registered on chain), stored, fetched back and
    opened: PSI messages are each logged on chain; training messages go into the sender's epoch root."""

    store: EmbeddedStore
    task: VerticalTaskClient
    chain_id: int
    accounts: Mapping[str, LocalAccount]
    keys: Mapping[str, SealKey]
    outboxes: dict[str, Outbox] = field(default_factory=lambda: defaultdict(Outbox))
    seq: dict[tuple[str, str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    public: dict[str, bytes] = field(default_factory=dict)
    bytes_sent: int = 0
    gas: int = 0

    def _context(self, sender: str, recipient: str, kind: str, epoch: int) -> Context:
        key = (sender, recipient, kind, epoch)
        n = self.seq[key]
        self.seq[key] += 1
        addresses = self.accounts[sender].address, self.accounts[recipient].address
        return Context(self.chain_id, self.task.address, *addresses, kind, epoch, n)

    def _seal(self, sender: str, recipient: str, data: bytes, ctx: Context) -> bytes:
        if recipient not in self.public:
            self.public[recipient] = self.task.encryption_key(self.accounts[recipient].address)
        sealed = seal(data, self.public[recipient], ctx)
        self.bytes_sent += len(sealed)
        return sealed

    def carry(self, sender: str, recipient: str, kind: str, epoch: int, data: bytes) -> bytes:
        """A training message: sealed, into the sender's outbox (its epoch root), stored, fetched, opened."""
        ctx = self._context(sender, recipient, kind, epoch)
        sealed = self.outboxes[sender].add(self._seal(sender, recipient, data, ctx))
        got = self.store.get(self.store.put(sealed), max_size=len(sealed))
        return self.keys[recipient].open(got, ctx, max_size=len(data))

    def log(self, sender: str, recipient: str, kind: str, data: bytes) -> bytes:
        """A PSI or alignment message: sealed, stored, logged on chain (sha256 and CID), fetched, opened."""
        ctx = self._context(sender, recipient, kind, 0)
        sealed = self._seal(sender, recipient, data, ctx)
        cid = self.store.put(sealed)
        k = Kind.ALIGNMENT if kind == "alignment" else Kind.PSI
        digest = hashlib.sha256(sealed).digest()
        receipt = self.task.post(self.accounts[sender], self.accounts[recipient].address, k, ctx.seq, digest, cid)
        self.gas += int(receipt["gasUsed"])
        got = self.store.get(cid, max_size=MAX_PSI_MESSAGE + OVERHEAD)
        return self.keys[recipient].open(got, ctx, max_size=MAX_PSI_MESSAGE)


def _spec_hash(cfg: VerticalConfig, spec: SplitSpec, parts: Mapping[str, Schema]) -> bytes:
    doc = {
        "parties": [[n, list(c)] for n, c in cfg.parties],
        "schema": {n: s.to_spec() for n, s in parts.items()},
        "model": spec.__dict__,
        "min_intersection": cfg.min_intersection,
    }
    return keccak(json.dumps(doc, sort_keys=True).encode())


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


class _Run:
    """One task played by every party in this process: the chain, the store, each role's state."""

    def __init__(self, cfg: VerticalConfig, chain: Chain, say: Callable[[str], None]) -> None:
        self.cfg, self.chain, self.say = cfg, chain, say
        self.spec = cfg.split_spec()
        parties, self.labels, parts = split_parties(cfg)
        self.owner_data, self.features = parties[0], parties[1:]
        self.names = [p.name for p in self.features]
        self.xs = {p.name: encode_party(p, parts[p.name]) for p in parties}
        self.accounts = {"owner": Account.create(), **{n: Account.create() for n in self.names}}
        self.keys = {who: SealKey.generate() for who in self.accounts}
        for a in self.accounts.values():
            chain.fund(a.address, 10**21)
        owner = self.owner = self.accounts["owner"]
        token_address, _ = deploy_contract(
            chain, owner, "RewardToken", "Task", "TSK", 10**6 * TOKEN_UNIT, owner.address
        )
        self.token = TokenClient(chain, token_address)
        terms = TaskTerms(
            bounty=cfg.bounty * TOKEN_UNIT,
            stake=cfg.stake * TOKEN_UNIT,
            epochs=cfg.rounds,
            min_intersection=cfg.min_intersection,
            window=WINDOW,
            slash_bps=cfg.slash_bps,
        )
        for n in self.names:
            self.token.transfer(owner, self.accounts[n].address, terms.stake)
        self.task, _ = deploy_task(
            chain,
            owner,
            token_address,
            _spec_hash(cfg, self.spec, parts),
            [self.accounts[n].address for n in self.names],
            terms,
        )
        self.before = {n: self.token.balance_of(self.accounts[n].address) for n in self.names}  # stakes: not rewards
        self.task.fund(owner, self.keys["owner"].public)
        for n in self.names:
            self.task.join(self.accounts[n], self.keys[n].public)

    def align(self, wire: _Wire) -> dict[str, Any]:
        """The PSI with every party, through the wire; the intersection posted and confirmed."""
        started = time.perf_counter()
        self.alignments, received = align_in_memory(
            self.owner_data.ids,
            {p.name: p.ids for p in self.features},
            task_tag(self.chain.chain_id, self.task.address, 0),
            minimum=self.cfg.min_intersection,
            deliver=wire.log,
            sample_key=hashlib.sha256(b"fedchain/demo/sample-ids/%d" % self.cfg.seed).digest(),
        )
        size = len(self.alignments["owner"].rows)
        alignment_digests = [hashlib.sha256(received[n][-1]).digest() for n in self.names]
        self.task.align(self.owner, size, merkle_root(alignment_digests))
        for n in self.names:
            self.task.confirm(self.accounts[n], len(self.alignments[n].rows))
        return {
            "owner_rows": len(self.owner_data.ids),
            "intersection": size,
            "seconds": round(time.perf_counter() - started, 2),
            "bytes": wire.bytes_sent,
            "gas": wire.gas,
        }

    def train(self, wire: _Wire) -> tuple[list[dict[str, Any]], dict[str, bytes | None], dict[str, bytes | None]]:
        """Every epoch; returns the rows of the table and the last validation and test embeddings."""
        self.batches = Batches.of(list(self.alignments["owner"].rows), self.spec)
        self.role = OwnerParty(
            self.xs[self.owner_data.name], self.labels, self.alignments["owner"], self.names, self.spec
        )
        self.roles = {n: FeatureParty(n, self.xs[n], self.alignments[n], self.spec) for n in self.names}
        rounds, valid, test = [], {}, {}
        for e in range(self.cfg.rounds):
            row, valid, test = self._epoch(e, wire)
            rounds.append(row)
        return rounds, valid, test

    def _embeddings(self, wire: _Wire, quiet: set[str], sample_ids: list[bytes], e: int) -> dict[str, bytes | None]:
        return {
            n: None if n in quiet else wire.carry(n, "owner", "embedding", e, r.embed(sample_ids))
            for n, r in self.roles.items()
        }

    def _epoch(self, e: int, wire: _Wire) -> tuple[dict[str, Any], dict[str, bytes | None], dict[str, bytes | None]]:
        """One epoch: every batch forward and back through the wire, the validation embeddings (and on the
        last epoch the test ones), then each member's commitment and the timeout of a party gone silent."""
        started, sent_before, gas = time.perf_counter(), wire.bytes_sent, 0
        quiet = {n for n, at in self.cfg.silent.items() if at <= e + 1 and n in self.roles}
        losses = []
        for batch in self.batches.epoch(e):
            messages = {
                n: None if n in quiet else wire.carry(n, "owner", "embedding", e, r.forward(batch))
                for n, r in self.roles.items()
            }
            loss, grads = self.role.step(batch, messages)
            losses.append(loss)
            for n, g in grads.items():
                self.roles[n].backward(batch, wire.carry("owner", n, "gradient", e, g))
        valid = self._embeddings(wire, quiet, self.batches.valid, e)
        last = e + 1 == self.cfg.rounds
        test = self._embeddings(wire, quiet, self.batches.test, e) if last else {}
        valid_auc = self.role.auc(self.batches.valid, valid)
        for n in self.names:
            if n not in quiet:
                gas += int(self.task.commit_epoch(self.accounts[n], e, wire.outboxes[n].close_epoch())["gasUsed"])
        self.role.close_epoch()
        fresh = sorted(quiet - self.role.silent)
        if fresh:  # they missed the epoch: wait out the window and time them out
            self.chain.advance_time(WINDOW + 1)
            for n in fresh:
                gas += int(self.task.timeout(self.owner, self.accounts[n].address)["gasUsed"])
                self.role.silent.add(n)
                self.say(f"  {n} went silent: timed out, its stake slashed, its embedding now a constant")
        gas += int(self.task.commit_epoch(self.owner, e, wire.outboxes["owner"].close_epoch())["gasUsed"])
        row = {
            "epoch": e + 1,
            "loss": round(float(np.mean(losses)), 6),
            "valid_auc": round(valid_auc, 6),
            "bytes": wire.bytes_sent - sent_before,
            "gas": gas,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.say(
            f"  epoch {row['epoch']:>3}  loss {row['loss']:.4f}  valid AUC {row['valid_auc']:.4f}  "
            f"{row['bytes'] / 2**20:.2f} MiB  gas {gas}  {row['seconds']:.2f} s"
        )
        return row, valid, test

    def settle(self, wire: _Wire, valid: Mapping[str, bytes | None]) -> tuple[dict[str, float], Any, list[int]]:
        """Shapley values on the validation rows, the coalition table stored, the shares settled on chain."""
        phi, table = self.role.value(self.batches.valid, valid)
        active = [n not in self.role.silent for n in self.names]
        shares = shares_bps([phi.get(n, 0.0) for n in self.names], active)
        doc = table_bytes([n for n in self.names if n not in self.role.silent], table, phi)
        self.task.settle(self.owner, hashlib.sha256(doc).digest(), wire.store.put(doc), shares)
        for n in self.names:
            if self.task.owed(self.accounts[n].address):
                self.task.claim(self.accounts[n])
        return phi, table, shares

    def baselines(self) -> tuple[float, float]:
        """The owner alone (its columns, all its customers outside the test rows) and every column pooled
        (the federation's training rows), both on the federation's test rows."""
        owner_rows = self.alignments["owner"].rows
        test_rows = [owner_rows[s] for s in self.batches.test]
        x_owner, y = self.xs[self.owner_data.name], self.labels
        alone = np.setdiff1d(np.arange(len(y)), np.array(test_rows))
        label_party = _baseline(self.cfg.model, x_owner[alone], y[alone], x_owner[test_rows], y[test_rows], self.spec)

        def pooled(sample_ids: Sequence[bytes]) -> npt.NDArray[np.float32]:
            cols = [x_owner[[owner_rows[s] for s in sample_ids]]]
            cols += [self.xs[n][[self.alignments[n].rows[s] for s in sample_ids]] for n in self.names]
            return np.concatenate(cols, axis=1)

        train_y = y[[owner_rows[s] for s in self.batches.train]]
        central = _baseline(
            self.cfg.model, pooled(self.batches.train), train_y, pooled(self.batches.test), y[test_rows], self.spec
        )
        return label_party, central


def run_vertical_demo(
    cfg: VerticalConfig,
    out: Callable[[str], None] | None = None,
    chain: Chain | None = None,
    store_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the whole task; returns the JSON document, printing progress through `out`. The store lives
    in a temporary directory unless `store_dir` is given (a test reads what an outsider could)."""
    say = out or (lambda _line: None)
    run = _Run(cfg, chain or embedded_chain(), say)
    say(
        f"task {run.task.address}: owner {run.owner_data.name} ({len(run.owner_data.ids)} customers), parties "
        + ", ".join(f"{p.name} ({len(p.ids)})" for p in run.features)
        + f"; {cfg.model}, {cfg.rounds} epochs; every message sealed to its recipient (HPKE)"
    )
    with tempfile.TemporaryDirectory(prefix="fedchain-vertical-") as tmp:
        store = EmbeddedStore(store_dir or Path(tmp) / "store")
        wire = _Wire(store, run.task, run.chain.chain_id, run.accounts, run.keys)
        psi = run.align(wire)
        mib = psi["bytes"] / 2**20
        say(f"PSI: {psi['intersection']} shared customers in {psi['seconds']} s ({mib:.1f} MiB, gas {psi['gas']})")
        rounds, valid, test = run.train(wire)
        federated_auc = run.role.auc(run.batches.test, test)
        phi, table, shares = run.settle(wire, valid)
    rewards = {n: (run.token.balance_of(run.accounts[n].address) - run.before[n]) / TOKEN_UNIT for n in run.names}
    label_party_auc, centralized_auc = run.baselines()
    doc: dict[str, Any] = {
        "mode": "vertical",
        "data": _portable(cfg.data),
        "task": run.task.address,
        "model": cfg.model,
        "overlap": cfg.overlap,
        "psi": psi,
        "rows": {"train": len(run.batches.train), "valid": len(run.batches.valid), "test": len(run.batches.test)},
        "parties": [
            {
                "name": run.owner_data.name,
                "role": "owner",
                "columns": list(run.owner_data.columns),
                "rows": len(run.owner_data.ids),
                "shapley": None,
                "share_bps": None,
                "reward": -float(cfg.bounty),
            }
        ]
        + [
            {
                "name": n,
                "role": "dropped" if n in run.role.silent else "feature",
                "columns": list(p.columns),
                "rows": len(p.ids),
                "shapley": round(phi.get(n, 0.0), 6),
                "share_bps": share,
                "reward": round(rewards[n], 6),
            }
            for n, p, share in zip(run.names, run.features, shares, strict=True)
        ],
        "coalitions": [{"parties": sorted(c), "valid_auc": round(v, 6)} for c, v in table.items()],
        "rounds": rounds,
        "label_party_auc": round(label_party_auc, 6),
        "federated_auc": round(federated_auc, 6),
        "centralized_auc": round(centralized_auc, 6),
    }
    _summary(doc, say)
    return doc


def _portable(path: Path) -> str:
    """`path` relative to the repository when it is inside it (result files name no machine's paths)."""
    root = DEFAULT_DATA.resolve().parents[2]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return path.name


def _summary(doc: Mapping[str, Any], say: Callable[[str], None]) -> None:
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
