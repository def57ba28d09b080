"""Splitting one data set into companies: stratified at random, or with a Dirichlet label skew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.errors import NodeError
from node.learn.data import Dataset
from node.sim.companies import DemoConfig, split_companies


def _data(n: int = 4000, positives: float = 0.2) -> Dataset:
    rng = np.random.default_rng(1)
    y = (rng.random(n) < positives).astype(np.float32)
    x = np.column_stack([np.arange(n, dtype=np.float32), y]).astype(np.float32)  # column 0: the row's id
    return Dataset(x, y, {}, {}, "synthetic")


def _cfg(**kw: object) -> DemoConfig:
    return DemoConfig(data=Path("unused.csv"), split_by=None, peers=8, min_rows=1, **kw)  # type: ignore[arg-type]


def _rows(companies: list) -> list[set[int]]:  # type: ignore[type-arg]
    return [{int(v) for v in np.concatenate([c.train.x[:, 0], c.test.x[:, 0]])} for c in companies]


def _positive_share(companies: list) -> list[float]:  # type: ignore[type-arg]
    return [float(np.concatenate([c.train.y, c.test.y]).mean()) for c in companies]


def test_the_dirichlet_split_skews_labels_and_loses_no_row() -> None:
    data = _data()
    skewed = split_companies(_cfg(dirichlet=0.3), data)
    even = split_companies(_cfg(), data)
    for companies in (skewed, even):
        rows = _rows(companies)
        assert sum(len(r) for r in rows) == len(set().union(*rows))  # no row in two companies
    assert len(set().union(*_rows(even))) == len(data)
    assert np.ptp(_positive_share(even)) < 0.02  # stratified: every company sees the same share of buyers
    assert np.ptp(_positive_share(skewed)) > 0.3  # skewed: some see mostly buyers, some almost none


def test_the_dirichlet_split_is_seeded() -> None:
    data = _data()
    one, two = split_companies(_cfg(dirichlet=0.5), data), split_companies(_cfg(dirichlet=0.5), data)
    other = split_companies(_cfg(dirichlet=0.5, seed=1), data)
    assert _rows(one) == _rows(two)
    assert _rows(one) != _rows(other)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_a_dirichlet_split_needs_a_positive_alpha(alpha: float) -> None:
    with pytest.raises(NodeError, match="alpha > 0"):
        split_companies(_cfg(dirichlet=alpha), _data())


def test_a_dirichlet_split_needs_a_number_of_peers() -> None:
    cfg = DemoConfig(data=Path("unused.csv"), split_by="job", dirichlet=0.5)
    with pytest.raises(NodeError, match="number of peers"):
        split_companies(cfg, _data())
