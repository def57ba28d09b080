"""`fedchain vertical run`: one member of a vertical task as a long-running process.

It loads the member's CSV (its id column and its columns from the task spec; the
owner's target column too), its account keystore and its sealing key (X25519,
created on first run and kept encrypted with the same password), opens the
chain and the IPFS node, checks the task was deployed with this spec, and runs
its step machine (`node.vertical.node`) at every block until the task is over.
A chain or IPFS outage is waited out; at the end it writes what it measured
(`--result`, JSON).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.chain import Chain, connect
from ledger.errors import ChainUnreachable, ContractRevert
from ledger.keystore import load_keystore, read_password
from ledger.vertical import VerticalTaskClient
from node.errors import NodeError
from node.learn.data import encode_labels
from node.privacy.seal import SealKey
from node.store import StoreError, open_store
from node.vertical.data import load_party
from node.vertical.limits import MAX_QUERY
from node.vertical.model import load_owner_model
from node.vertical.node import OwnerNode, PartyNode
from node.vertical.party import encode_party
from node.vertical.scoring import Scorer
from node.vertical.spec import TaskSpec
from node.vertical.state import StateFile

__all__ = [
    "MemberConfig",
    "beside_keystore",
    "measured_by",
    "open_member",
    "open_scorer",
    "run_member",
    "sample_key",
]


@dataclass(frozen=True)
class MemberConfig:
    spec: Path
    task: str
    name: str
    data: Path
    keystore: Path
    rpc: str
    ipfs: str
    password_file: Path | None = None
    seal_key: Path | None = None  # default: the keystore's path with .seal.pem
    from_block: int = 0
    poll_seconds: float = 1.0
    sample_seed: int | None = None  # derive the owner's sample ids from a seed: demos and tests only
    fetch_timeout: float = 10.0
    model: Path | None = None  # where the member keeps its trained part (default: next to the keystore)
    state: Path | None = None  # where the member keeps its working state (default: next to the keystore)
    serve: bool = False  # (a feature party) answer the owner's scoring requests once the task is paid
    max_query: int = MAX_QUERY  # (a feature party) the most prospects it scores in one request

    @property
    def model_path(self) -> Path:
        return self.model or beside_keystore(self.keystore, self.task, "model.npz")

    @property
    def state_path(self) -> Path:
        return self.state or beside_keystore(self.keystore, self.task, "state")


def beside_keystore(keystore: Path, task: str, suffix: str) -> Path:
    """A member's file for task `task` unless told where: beside its keystore, KEYSTORE.TASK.SUFFIX."""
    return keystore.with_name(f"{keystore.stem}.{task.lower().removeprefix('0x')}.{suffix}")


def sample_key(seed: int) -> bytes:
    """The owner's sample-id key derived from `seed` (the demos use it, so runs can be compared)."""
    return hashlib.sha256(b"fedchain/demo/sample-ids/%d" % seed).digest()


def _seal_key(cfg: MemberConfig, password: str, task: VerticalTaskClient, account: str, name: str) -> SealKey:
    """The member's sealing key: created on its first run; once it has registered one for the task, that
    one (a new key could open nothing sent to it)."""
    path = cfg.seal_key or cfg.keystore.with_suffix(".seal.pem")
    registered = task.encryption_key(account)
    if not path.exists():
        if any(registered):
            raise NodeError(f"{path}: no sealing key, and {name} registered one for task {task.address}")
        key = SealKey.generate()
        key.save(path, password)
        return key
    key = SealKey.load(path, password)
    if any(registered) and registered != key.public:
        raise NodeError(f"{path}: not the sealing key {name} registered for task {task.address}")
    return key


def open_member(cfg: MemberConfig) -> tuple[Chain, OwnerNode | PartyNode]:
    """The chain and this member's step machine, everything checked (one-line errors)."""
    spec = TaskSpec.load(cfg.spec)
    member = spec.member(cfg.name)
    password = read_password(cfg.password_file)
    account = load_keystore(cfg.keystore, password)
    chain = connect(cfg.rpc)
    task = VerticalTaskClient(chain, cfg.task)
    store = open_store(cfg.ipfs, cfg.spec.parent)
    is_owner = member.name == spec.owner.name
    columns = [*member.columns, spec.schema.target] if is_owner else list(member.columns)
    data = load_party(cfg.data, member.name, spec.id_column, columns)
    x = encode_party(data, spec.part(member.name))
    common: dict[str, Any] = {
        "account": account,
        "task": task,
        "store": store,
        "key": _seal_key(cfg, password, task, account.address, member.name),
        "from_block": cfg.from_block,
        "fetch_timeout": cfg.fetch_timeout,
        "model_path": cfg.model_path,
        "state": StateFile(cfg.state_path, bytes(account.key), f"{task.address}|{member.name}"),
    }
    if not is_owner:
        return chain, PartyNode(spec, member.name, data, x, serve=cfg.serve, max_query=cfg.max_query, **common)
    at = data.columns.index(spec.schema.target)
    labels = encode_labels(cfg.data, [r[at] for r in data.rows], spec.schema.target, spec.schema.positive)
    key = None if cfg.sample_seed is None else sample_key(cfg.sample_seed)
    return chain, OwnerNode(spec, member.name, data, x, labels, sample_key=key, **common)


def open_scorer(cfg: MemberConfig, prospects: Path) -> Scorer:
    """The owner's side of a scoring request: its kept model, its prospects, everything checked."""
    spec = TaskSpec.load(cfg.spec)
    member = spec.member(cfg.name)
    if member.name != spec.owner.name:
        raise NodeError(f"{member.name!r} is a feature party: only the task owner ({spec.owner.name}) scores")
    password = read_password(cfg.password_file)
    account = load_keystore(cfg.keystore, password)
    chain = connect(cfg.rpc)
    task = VerticalTaskClient(chain, cfg.task)
    key = _seal_key(cfg, password, task, account.address, member.name)
    data = load_party(prospects, member.name, spec.id_column, list(member.columns))
    x = encode_party(data, spec.part(member.name))
    ident = {"chain_id": chain.chain_id, "contract": task.address, "spec_hash": spec.hash.hex()}
    model = load_owner_model(cfg.model_path, ident, member.name, x.shape[1], spec.names, spec.model)
    store = open_store(cfg.ipfs, cfg.spec.parent)
    common: dict[str, Any] = {"account": account, "task": task, "store": store, "key": key}
    common.update(from_block=cfg.from_block, fetch_timeout=cfg.fetch_timeout)
    return Scorer(spec, member.name, model, data, x, **common)


def run_member(
    cfg: MemberConfig,
    log: Callable[[str], None],
    stop: threading.Event | None = None,
    result: Path | None = None,
) -> int:
    """Step the member at every block until the task is over (or `stop`); 0 when it is."""
    stop = stop or threading.Event()
    chain, node = open_member(cfg)
    log(f"{node.name}: task {node.task.address} on chain {chain.chain_id}, stage {node.task.stage().name.lower()}")
    if node.resumed:
        log(f"{node.name}: resumed from {cfg.state_path}")
    while not node.done and not stop.is_set():
        try:
            lines = node.step()
        except (ChainUnreachable, StoreError, ContractRevert) as exc:  # an outage, or a race another member won
            log(f"{node.name}: waiting: {exc}")
            stop.wait(cfg.poll_seconds)
            reopened = _reopen(cfg, log, stop)  # from the state file: the step may have been half done
            if reopened is not None:
                chain, node = reopened
            continue
        for line in lines:
            log(f"{time.strftime('%H:%M:%S')} {node.name}: {line}")
        if not lines:
            try:
                chain.wait_for_block(cfg.poll_seconds, stop)
            except ChainUnreachable:
                stop.wait(cfg.poll_seconds)
    if result is not None:
        result.write_text(json.dumps(measured_by(node), indent=1) + "\n")
    serving = isinstance(node, PartyNode) and node.serve
    return 0 if node.done or (serving and stop.is_set()) else 1  # a serving party ends when it is stopped


def _reopen(
    cfg: MemberConfig, log: Callable[[str], None], stop: threading.Event
) -> tuple[Chain, OwnerNode | PartyNode] | None:
    """The member afresh from its state file, as a restart would have it, once the chain and IPFS answer
    (None if stopped first)."""
    while not stop.is_set():
        try:
            return open_member(cfg)
        except (ChainUnreachable, StoreError, ContractRevert) as exc:
            log(f"{cfg.name}: waiting: {exc}")
            stop.wait(cfg.poll_seconds)
    return None


def measured_by(node: OwnerNode | PartyNode) -> dict[str, Any]:
    """What the member measured: its messages' bytes and gas by stage, refusals, and the owner's outcome."""
    doc: dict[str, Any] = {
        "name": node.name,
        "stats": {k: dict(v) for k, v in node.stats.items()},
        "rejected": dict(node.rejected),
    }
    if isinstance(node, OwnerNode):
        if node.alignment is None or node.batches is None:
            raise NodeError(f"{node.name}: the task ended before alignment")
        rows = node.alignment.rows
        outcome = node.outcome
        doc.update(
            {
                "rounds": node.rounds,
                "federated_auc": outcome.get("federated_auc"),
                "shapley": outcome.get("shapley"),
                "shares": outcome.get("shares"),
                "coalitions": [
                    {"parties": sorted(c), "valid_auc": v} for c, v in outcome.get("coalitions", {}).items()
                ],
                # the owner's own row numbers (its file, its machine): for the demo's baselines
                "train_rows": [rows[s] for s in node.batches.train],
                "test_rows": [rows[s] for s in node.batches.test],
            }
        )
    return doc
