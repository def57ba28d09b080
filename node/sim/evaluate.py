"""How the simulations measure a model: AUC on test rows, and training alone as the yardstick."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from node.core.codec import IntArray
from node.horizontal.spec import NodeSpec
from node.learn.data import Dataset
from node.learn.model import auc, predict, train_rounds
from node.sim.companies import Company

__all__ = ["auc_of", "concat", "round_aucs", "train_alone"]


def concat(parts: list[Dataset]) -> Dataset:
    return Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), {}, {}, parts[0].source)


def train_alone(
    nspec: NodeSpec,
    data: Dataset,
    rounds: int,
    start: dict[str, IntArray] | None = None,
    each: Callable[[int, dict[str, IntArray]], None] | None = None,
) -> dict[str, IntArray]:
    """Train on `data` alone for as many epochs as the federation's rounds give (same seeds);
    `each(round, params)` sees the model after every round."""
    return train_rounds(nspec.model, nspec.training, data, rounds, start, each)


def auc_of(nspec: NodeSpec, params: dict[str, IntArray], data: Dataset) -> float:
    return round(auc(data.y, predict(nspec.model, params, data.x)), 4)


def round_aucs(
    nspec: NodeSpec, params: dict[str, IntArray], companies: list[Company], test_all: Dataset
) -> dict[str, float]:
    """A model's mean AUC over the companies' own test rows (one-class ones skipped) and on all of them."""
    own = [auc_of(nspec, params, c.test) for c in companies]
    return {"mean_auc": round(float(np.nanmean(own)), 4), "population_auc": auc_of(nspec, params, test_all)}
