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
from node.store import EmbeddedStore
from node.vertical.data import PartyData, check_disjoint
from node.vertical.messages import merkle_root
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
    """Messages through the embedded store, each logged on chain (PSI) or counted for its epoch's root."""

    store: EmbeddedStore
    task: VerticalTaskClient
    accounts: Mapping[str, LocalAccount]
    bytes_sent: int = 0
    seq: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    gas: int = 0

    def carry(self, data: bytes) -> bytes:
        """Store and fetch back (what the recipient reads)."""
        self.bytes_sent += len(data)
        return self.store.get(self.store.put(data), max_size=len(data))

    def log(self, sender: str, recipient: str, kind: str, data: bytes) -> bytes:
        """A PSI or alignment message: stored, fetched, and logged on chain with its sha256 and CID."""
        self.bytes_sent += len(data)
        cid = self.store.put(data)
        k = Kind.ALIGNMENT if kind == "alignment" else Kind.PSI
        n = self.seq[(sender, k)]
        self.seq[(sender, k)] += 1
        receipt = self.task.post(
            self.accounts[sender], self.accounts[recipient].address, k, n, hashlib.sha256(data).digest(), cid
        )
        self.gas += int(receipt["gasUsed"])
        return self.store.get(cid, max_size=MAX_PSI_MESSAGE)


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


def run_vertical_demo(
    cfg: VerticalConfig, out: Callable[[str], None] | None = None, chain: Chain | None = None
) -> dict[str, Any]:
    """Run the whole task; returns the JSON document, printing progress through `out`."""
    say = out or (lambda _line: None)
    spec = cfg.split_spec()
    parties, labels, parts = split_parties(cfg)
    owner_data, features = parties[0], parties[1:]
    names = [p.name for p in features]
    xs = {p.name: encode_party(p, parts[p.name]) for p in parties}

    chain = chain or embedded_chain()
    accounts = {p.name: Account.create() for p in parties}
    for a in accounts.values():
        chain.fund(a.address, 10**21)
    owner = accounts[owner_data.name]
    token_address, _ = deploy_contract(chain, owner, "RewardToken", "Task", "TSK", 10**6 * TOKEN_UNIT, owner.address)
    token = TokenClient(chain, token_address)
    terms = TaskTerms(
        bounty=cfg.bounty * TOKEN_UNIT,
        stake=cfg.stake * TOKEN_UNIT,
        epochs=cfg.rounds,
        min_intersection=cfg.min_intersection,
        window=WINDOW,
        slash_bps=cfg.slash_bps,
    )
    for n in names:
        token.transfer(owner, accounts[n].address, terms.stake)
    task, _ = deploy_task(
        chain, owner, token_address, _spec_hash(cfg, spec, parts), [accounts[n].address for n in names], terms
    )
    before = {n: token.balance_of(accounts[n].address) for n in names}  # stakes are paid back: not a reward
    task.fund(owner)
    for n in names:
        task.join(accounts[n])
    say(
        f"task {task.address}: owner {owner_data.name} ({len(owner_data.ids)} customers), parties "
        + ", ".join(f"{p.name} ({len(p.ids)})" for p in features)
        + f"; {cfg.model}, {cfg.rounds} epochs"
    )

    with tempfile.TemporaryDirectory(prefix="fedchain-vertical-") as tmp:
        wire = _Wire(EmbeddedStore(Path(tmp) / "store"), task, {"owner": owner, **{n: accounts[n] for n in names}})
        started = time.perf_counter()
        alignments, received = align_in_memory(
            owner_data.ids,
            {p.name: p.ids for p in features},
            task_tag(chain.chain_id, task.address, 0),
            minimum=cfg.min_intersection,
            deliver=wire.log,
            sample_key=hashlib.sha256(b"fedchain/demo/sample-ids/%d" % cfg.seed).digest(),
        )
        size = len(alignments["owner"].rows)
        task.align(owner, size, merkle_root([hashlib.sha256(m).digest() for n in names for m in received[n][-1:]]))
        for n in names:
            task.confirm(accounts[n], len(alignments[n].rows))
        psi = {
            "owner_rows": len(owner_data.ids),
            "intersection": size,
            "seconds": round(time.perf_counter() - started, 2),
            "bytes": wire.bytes_sent,
            "gas": wire.gas,
        }
        say(f"PSI: {size} shared customers in {psi['seconds']} s ({wire.bytes_sent / 2**20:.1f} MiB, gas {wire.gas})")

        batches = Batches.of(list(alignments["owner"].rows), spec)
        owner_role = OwnerParty(xs[owner_data.name], labels, alignments["owner"], names, spec)
        roles = {n: FeatureParty(n, xs[n], alignments[n], spec) for n in names}
        rounds = [
            _epoch(e, cfg, batches, owner_role, roles, wire, task, accounts, owner, chain, say)
            for e in range(cfg.rounds)
        ]
        final = {n: (None if n in owner_role.silent else wire.carry(roles[n].embed(batches.valid))) for n in names}
        test = {n: (None if n in owner_role.silent else wire.carry(roles[n].embed(batches.test))) for n in names}
        federated_auc = owner_role.auc(batches.test, test)
        phi, table = owner_role.value(batches.valid, final)
        values = [phi.get(n, 0.0) for n in names]
        active = [n not in owner_role.silent for n in names]
        shares = shares_bps(values, active)
        table_doc = table_bytes([n for n in names if n not in owner_role.silent], table, phi)
        table_cid = wire.store.put(table_doc)
        task.settle(owner, hashlib.sha256(table_doc).digest(), table_cid, shares)
    for n in names:
        if task.owed(accounts[n].address):
            task.claim(accounts[n])
    rewards = {n: (token.balance_of(accounts[n].address) - before[n]) / TOKEN_UNIT for n in names}

    test_rows = [alignments["owner"].rows[s] for s in batches.test]
    x_owner = xs[owner_data.name]
    alone_rows = np.setdiff1d(np.arange(len(labels)), np.array(test_rows))
    label_party_auc = _baseline(
        cfg.model, x_owner[alone_rows], labels[alone_rows], x_owner[test_rows], labels[test_rows], spec
    )

    def pooled(sample_ids: Sequence[bytes]) -> npt.NDArray[np.float32]:
        cols = [x_owner[[alignments["owner"].rows[s] for s in sample_ids]]]
        cols += [xs[n][[alignments[n].rows[s] for s in sample_ids]] for n in names]
        return np.concatenate(cols, axis=1)

    train_rows = [alignments["owner"].rows[s] for s in batches.train]
    centralized_auc = _baseline(
        cfg.model, pooled(batches.train), labels[train_rows], pooled(batches.test), labels[test_rows], spec
    )
    doc: dict[str, Any] = {
        "mode": "vertical",
        "data": _portable(cfg.data),
        "task": task.address,
        "model": cfg.model,
        "overlap": cfg.overlap,
        "psi": psi,
        "rows": {"train": len(batches.train), "valid": len(batches.valid), "test": len(batches.test)},
        "parties": [
            {
                "name": owner_data.name,
                "role": "owner",
                "columns": list(owner_data.columns),
                "rows": len(owner_data.ids),
                "shapley": None,
                "share_bps": None,
                "reward": -float(cfg.bounty),
            }
        ]
        + [
            {
                "name": n,
                "role": "dropped" if n in owner_role.silent else "feature",
                "columns": list(p.columns),
                "rows": len(p.ids),
                "shapley": round(phi.get(n, 0.0), 6),
                "share_bps": s,
                "reward": round(rewards[n], 6),
            }
            for n, p, s in zip(names, features, shares, strict=True)
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


def _epoch(
    e: int,
    cfg: VerticalConfig,
    batches: Batches,
    owner: OwnerParty,
    roles: Mapping[str, FeatureParty],
    wire: _Wire,
    task: VerticalTaskClient,
    accounts: Mapping[str, LocalAccount],
    owner_account: LocalAccount,
    chain: Chain,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One training epoch: every batch forward and back through the store, then the epoch's commitments
    (and the timeout of any party that went silent)."""
    started, sent_before, gas = time.perf_counter(), wire.bytes_sent, 0
    quiet = {n for n, at in cfg.silent.items() if at <= e and n in roles}
    losses = []
    for batch in batches.epoch(e):
        messages = {n: None if n in quiet else wire.carry(r.forward(batch)) for n, r in roles.items()}
        loss, grads = owner.step(batch, messages)
        losses.append(loss)
        for n, g in grads.items():
            roles[n].backward(batch, wire.carry(g))
    valid = {n: None if n in quiet else wire.carry(r.embed(batches.valid)) for n, r in roles.items()}
    valid_auc = owner.auc(batches.valid, valid)
    for n, r in roles.items():
        if n not in quiet:
            gas += int(task.commit_epoch(accounts[n], e, r.outbox.close_epoch())["gasUsed"])
    root = owner.close_epoch()
    fresh = sorted(quiet - owner.silent)
    if fresh:  # they missed the epoch: wait out the window and time them out
        chain.advance_time(WINDOW + 1)
        for n in fresh:
            gas += int(task.timeout(owner_account, accounts[n].address)["gasUsed"])
            owner.silent.add(n)
            say(f"  {n} went silent: timed out, its stake slashed, its embedding now a constant")
    gas += int(task.commit_epoch(owner_account, e, root)["gasUsed"])
    row = {
        "epoch": e + 1,
        "loss": round(float(np.mean(losses)), 6),
        "valid_auc": round(valid_auc, 6),
        "bytes": wire.bytes_sent - sent_before,
        "gas": gas,
        "seconds": round(time.perf_counter() - started, 3),
    }
    say(
        f"  epoch {row['epoch']:>3}  loss {row['loss']:.4f}  valid AUC {row['valid_auc']:.4f}  "
        f"{row['bytes'] / 2**20:.2f} MiB  gas {gas}  {row['seconds']:.2f} s"
    )
    return row


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
