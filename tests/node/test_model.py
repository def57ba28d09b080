"""Models: reproducible training, deterministic initial weights, a correct AUC."""

from __future__ import annotations

import itertools

import numpy as np

from node.learn.data import Dataset
from node.learn.model import ModelSpec, TrainConfig, auc, initial_params, predict, train


def _toy(n: int = 400, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(np.float32)
    return Dataset(x, y, {}, {}, "toy")


def test_auc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=60).astype(np.float32)
    s = rng.integers(0, 5, size=60).astype(np.float64)  # many ties
    pairs = [(i, j) for i, j in itertools.product(range(60), range(60)) if y[i] == 1 and y[j] == 0]
    expected = sum(1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0 for i, j in pairs) / len(pairs)
    assert abs(auc(y, s) - expected) < 1e-12
    assert np.isnan(auc(np.ones(3, dtype=np.float32), s[:3]))


def test_initial_weights_are_deterministic() -> None:
    mlp = ModelSpec("mlp", 4, hidden=8, seed=3)
    a, b = initial_params(mlp), initial_params(mlp)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(a[k].any() for k in a)
    assert not any(v.any() for v in initial_params(ModelSpec("logreg", 4)).values())


def test_training_is_reproducible_and_learns() -> None:
    data = _toy()
    for kind in ("logreg", "mlp"):
        spec = ModelSpec(kind, 4, hidden=8)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, optimizer="adam", seed=5)
        p1 = train(spec, initial_params(spec), data, cfg)
        p2 = train(spec, initial_params(spec), data, cfg)
        assert all(np.array_equal(p1[k], p2[k]) for k in p1)
        assert auc(data.y, predict(spec, p1, data.x)) > 0.9
