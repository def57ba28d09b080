"""Companies for a simulated federation: the demo's settings, one CSV split into companies, cheaters drawn.

A split is by a column's values (e.g. `job`: one company per job), at random
(stratified: every company gets the same share of each class), or by a
Dirichlet(alpha) label skew. Each company's rows are split 80/20 (stratified,
seeded) into training and test rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from node.core.codec import IntArray
from node.datasets import DEFAULT_DATA
from node.errors import NodeError
from node.learn.data import Dataset, Schema, infer_schema, load_csv, read_rows
from node.sim.attacks import Behaviour

__all__ = ["Company", "DemoConfig", "assign_liars", "assign_roles", "load_companies", "split_companies"]


@dataclass
class DemoConfig:
    data: Path = DEFAULT_DATA
    target: str = "y"
    positive: str = "yes"
    split_by: str | None = "job"
    peers: int | None = None
    dirichlet: float | None = None  # with `peers`: label skew, each class shared out by Dirichlet(alpha) proportions
    drop: list[str] = field(default_factory=lambda: ["duration"])
    rounds: int = 10
    model: str = "logreg"
    rule: str = "fedavg"
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "adam"
    min_rows: int = 50
    seed: int = 0
    poisoners: int = 0
    poison: str = "sign-flip"
    free_riders: int = 0
    free_ride: str = "zero"
    scoring: str = "evaluation"  # [scoring] rule: "evaluation" or "agreement"
    liars: int = 0  # companies whose evaluations collude (the cheaters first, when there are any)
    epsilon: float | None = None  # [privacy]: every company trains with DP-SGD on this budget over the run
    clip: float = 1.0  # [privacy] clip: each customer's gradient bound
    sealed: bool = False  # [sealing]: updates and models only the members (and `auditors`) can read
    auditors: tuple[str, ...] = ()  # [sealing] auditors: X25519 public keys (0x + 64 hex)


def _cheating_order(cfg: DemoConfig, names: list[str]) -> list[str]:
    """The companies in the seeded order cheaters are drawn in."""
    return [names[i] for i in np.random.default_rng([cfg.seed, 7]).permutation(len(names))]


def assign_liars(cfg: DemoConfig, names: list[str]) -> list[str]:
    """Which companies lie in their evaluations: the first `cfg.liars` of the cheating order (so the
    poisoners and free riders first, when there are any)."""
    if cfg.liars and cfg.scoring != "evaluation":
        raise NodeError("lying evaluators (--liars) need scoring by evaluation (--scoring evaluation)")
    if not 0 <= cfg.liars < len(names):
        raise NodeError(f"{cfg.liars} liars among {len(names)} companies: at least one company must be honest")
    return _cheating_order(cfg, names)[: cfg.liars]


def assign_roles(cfg: DemoConfig, names: list[str]) -> dict[str, Behaviour | None]:
    """Which companies cheat (a seeded draw): name -> its behaviour, None for honest."""
    cheats = cfg.poisoners + cfg.free_riders
    if cfg.poisoners < 0 or cfg.free_riders < 0 or cheats >= len(names):
        raise NodeError(
            f"{cfg.poisoners} poisoners and {cfg.free_riders} free riders among {len(names)} companies: "
            "at least one company must be honest"
        )
    order = _cheating_order(cfg, names)
    roles: dict[str, Behaviour | None] = dict.fromkeys(names)
    for i, name in enumerate(order[:cheats]):
        kind = ("poisoner", cfg.poison) if i < cfg.poisoners else ("free-rider", cfg.free_ride)
        roles[name] = Behaviour(*kind, seed=cfg.seed * 1000 + i)
    return roles


@dataclass
class Company:
    name: str
    train: Dataset
    test: Dataset
    train_index: IntArray  # the training rows' positions in the whole file


def _stratified_split(y: npt.NDArray[np.float32], rng: np.random.Generator) -> tuple[IntArray, IntArray]:
    train_idx, test_idx = [], []
    for cls in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(y == cls))
        cut = round(len(idx) * 0.8)
        train_idx.append(idx[:cut])
        test_idx.append(idx[cut:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def load_companies(cfg: DemoConfig, say: Callable[[str], None] | None = None) -> tuple[Schema, list[Company]]:
    """Infer the schema from the whole file (warnings through `say`) and split it into companies."""
    schema, warnings = infer_schema(cfg.data, cfg.target, cfg.positive, drop=cfg.drop)
    for w in warnings:
        (say or (lambda _line: None))(f"note: {w}")
    return schema, split_companies(cfg, load_csv(cfg.data, schema))


def split_companies(cfg: DemoConfig, data: Dataset) -> list[Company]:
    rng = np.random.default_rng(cfg.seed)
    if cfg.dirichlet is not None and (cfg.peers is None or cfg.dirichlet <= 0):
        raise NodeError(
            "a Dirichlet label skew (--dirichlet ALPHA) needs a number of peers (--peers N) and an alpha > 0"
        )
    if cfg.peers is not None:
        groups: dict[str, list[int]] = {f"peer-{i + 1}": [] for i in range(cfg.peers)}
        for cls in (0.0, 1.0):
            members = rng.permutation(np.flatnonzero(data.y == cls))
            if cfg.dirichlet is None:  # stratified: every peer gets the same share of each class
                owner = np.arange(len(members)) % cfg.peers
            else:  # label skew: peer i gets share p_i ~ Dirichlet(alpha) of this class
                cuts = np.round(np.cumsum(rng.dirichlet([cfg.dirichlet] * cfg.peers)) * len(members)).astype(np.int64)
                owner = np.searchsorted(cuts, np.arange(len(members)), side="right")
            for j, i in zip(owner, members, strict=True):
                groups[f"peer-{int(j) + 1}"].append(int(i))
    else:
        header, rows = read_rows(cfg.data)
        if cfg.split_by not in header:
            raise NodeError(f"{cfg.data}: no column {cfg.split_by!r} to split by; the file has {header}")
        col = header.index(str(cfg.split_by))
        groups = {}
        for i, r in enumerate(rows):
            groups.setdefault(r[col].strip() or "<empty>", []).append(i)
    companies = []
    for name in sorted(groups):
        index = np.array(sorted(groups[name]), dtype=np.int64)
        part = data.subset(index)
        if len(part) < cfg.min_rows or part.y.min() == part.y.max():
            continue  # too small to train and test on
        tr, te = _stratified_split(part.y, rng)
        companies.append(Company(name, part.subset(tr), part.subset(te), index[tr]))
    if len(companies) < 2:
        raise NodeError(f"splitting {cfg.data} gave {len(companies)} usable companies; a federation needs 2")
    return companies
