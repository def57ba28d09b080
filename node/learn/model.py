"""Tabular models in torch, their parameters as fixed-point arrays, training and AUC.

- `logreg`: logistic regression (one linear layer).
- `mlp`: one hidden ReLU layer, then a linear output.

The federation's state is the global model as fixed-point int64 arrays (see
`node.core.codec`); a peer loads them into torch, trains locally, and returns the
fixed-point difference as its update. Initial weights come from numpy's PCG64
generator seeded by the spec, which gives the same numbers on every platform.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from node.core.codec import IntArray, from_fixed, to_fixed
from node.errors import NodeError
from node.learn.data import Dataset

__all__ = [
    "ModelSpec",
    "TrainConfig",
    "auc",
    "build",
    "initial_params",
    "layout",
    "predict",
    "train",
    "train_rounds",
]


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "logreg" | "mlp"
    n_features: int
    hidden: int = 32
    seed: int = 0

    @classmethod
    def from_spec(cls, table: Mapping[str, Any], n_features: int) -> ModelSpec:
        kind = str(table.get("kind", "logreg"))
        if kind not in ("logreg", "mlp"):
            raise NodeError(f"spec [model] kind = {kind!r}: expected 'logreg' or 'mlp'")
        return cls(kind, n_features, int(table.get("hidden", 32)), int(table.get("seed", 0)))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "adam"  # "adam" | "sgd"
    seed: int = 0

    @classmethod
    def from_spec(cls, table: Mapping[str, Any]) -> TrainConfig:
        cfg = cls(**{k: table[k] for k in ("epochs", "batch_size", "lr", "optimizer", "seed") if k in table})
        if cfg.optimizer not in ("adam", "sgd") or cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
            raise NodeError(f"spec [training] is invalid: {cfg}")
        return cfg

    def for_round(self, round_id: int) -> TrainConfig:
        """The configuration for round `round_id`: the same, seeded `seed + round_id`.

        Every local training a federation runs (a peer's update, local-only and
        centralized baselines, the Flower yardstick) takes its seed from here.
        """
        return replace(self, seed=self.seed + round_id)


def build(spec: ModelSpec) -> torch.nn.Module:
    if spec.kind == "logreg":
        return torch.nn.Sequential(torch.nn.Linear(spec.n_features, 1))
    return torch.nn.Sequential(
        torch.nn.Linear(spec.n_features, spec.hidden), torch.nn.ReLU(), torch.nn.Linear(spec.hidden, 1)
    )


def layout(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape, in the model's order."""
    return dict(_layout(spec))


@functools.cache
def _layout(spec: ModelSpec) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """`layout`, built once per model spec (building a torch module costs more than the rest of a lookup)."""
    return tuple((name, tuple(t.shape)) for name, t in build(spec).state_dict().items())


def initial_params(spec: ModelSpec) -> dict[str, IntArray]:
    """Fixed-point initial weights: zeros for logreg, scaled uniform (PCG64, seeded) for the MLP."""
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    params: dict[str, IntArray] = {}
    for name, shape in layout(spec).items():
        if spec.kind == "logreg":
            values: npt.NDArray[np.float64] = np.zeros(shape)
        else:
            fan_in = shape[1] if len(shape) == 2 else shape[0]
            bound = 1.0 / np.sqrt(fan_in)
            values = rng.uniform(-bound, bound, size=shape)
        params[name] = to_fixed(values)
    return params


def load(spec: ModelSpec, params: Mapping[str, IntArray]) -> torch.nn.Module:
    model = build(spec)
    state = {k: torch.from_numpy(from_fixed(params[k]).astype(np.float32)) for k in layout(spec)}
    model.load_state_dict(state)
    return model


def fixed_params(model: torch.nn.Module) -> dict[str, IntArray]:
    return {k: to_fixed(v.detach().double().numpy()) for k, v in model.state_dict().items()}


def train(spec: ModelSpec, params: Mapping[str, IntArray], data: Dataset, cfg: TrainConfig) -> dict[str, IntArray]:
    """Train from `params` on `data`; returns the new fixed-point parameters. Reproducible with cfg.seed."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = load(spec, params)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if cfg.optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=cfg.lr)
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(y), generator=gen)
        xs, ys = x[order], y[order]  # shuffled once; batches are slices (the same rows as indexing each)
        for start in range(0, len(y), cfg.batch_size):
            opt.zero_grad()
            loss = loss_fn(model(xs[start : start + cfg.batch_size]).squeeze(1), ys[start : start + cfg.batch_size])
            loss.backward()
            opt.step()
    return fixed_params(model)


def train_rounds(
    spec: ModelSpec,
    cfg: TrainConfig,
    data: Dataset,
    rounds: int,
    start: Mapping[str, IntArray] | None = None,
    each: Callable[[int, dict[str, IntArray]], None] | None = None,
) -> dict[str, IntArray]:
    """Train on `data` alone for `rounds` rounds' worth of local training, seeded as a federation's rounds
    are (`cfg.for_round(r)`), from `start` (default: the initial model); `each(r, params)` sees every round's."""
    params = dict(start) if start is not None else initial_params(spec)
    for r in range(1, rounds + 1):
        params = train(spec, params, data, cfg.for_round(r))
        if each is not None:
            each(r, params)
    return params


def predict(spec: ModelSpec, params: Mapping[str, IntArray], x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Scores (logits) for rows `x`; higher means more likely positive."""
    model = load(spec, params)
    model.eval()
    with torch.no_grad():
        out: npt.NDArray[np.float64] = model(torch.from_numpy(x)).squeeze(1).double().numpy()
    return out


def auc(y: npt.NDArray[np.float32], scores: npt.NDArray[np.float64]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with one class."""
    y = np.asarray(y)
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    sorted_scores = np.sort(np.asarray(scores, dtype=np.float64), kind="mergesort")
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="mergesort")
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts - 1) / 2 + 1, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))
