"""Scoring a prospect list with a federation's model: `fedchain predict`.

A prospect file is a CSV with the federation's feature columns (the spec's
`[data]`); it needs no label. Every cell is encoded exactly as in training
(`node.learn.data.encode_features`): a missing cell takes the column's center
or the "other" slot, an unseen category the "other" slot, and the load counts
both. Every other column (a customer id, a name, the label if it is there) is
carried through untouched. The output is the input's columns, then:

- `score`: the model's probability that the row is positive (6 decimals);
- `rank`: its place in the call list, 1 for the best (ties in file order);
- `decile`: 1 for the top tenth of the list, 10 for the bottom.

Rows stay in file order, or with `top` only the `top` best rows, best first (a
call list).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from node.core.codec import IntArray
from node.learn.data import DataError, Schema, encode_features, read_rows
from node.learn.marketing import deciles, ranks
from node.learn.model import ModelSpec, predict

__all__ = ["OUTPUT_COLUMNS", "Scored", "score_prospects", "write_scores"]

OUTPUT_COLUMNS = ("score", "rank", "decile")


@dataclass(frozen=True)
class Scored:
    header: list[str]
    rows: list[list[str]]
    score: npt.NDArray[np.float64]  # probabilities
    rank: npt.NDArray[np.int64]
    decile: npt.NDArray[np.int64]
    missing: dict[str, int]  # missing cells imputed, by column
    unknown_categories: dict[str, int]  # categories the schema does not know (the "other" slot), by column


def sigmoid(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * logits))  # no overflow for large |logit|
    return out


def score_prospects(path: Path, schema: Schema, model: ModelSpec, params: Mapping[str, IntArray]) -> Scored:
    """Score every row of `path` (DataError, naming file, row and column, for a row that cannot be scored)."""
    header, rows = read_rows(path)
    clash = [c for c in OUTPUT_COLUMNS if c in header]
    if clash:
        raise DataError(f"{path}: already has a column named {clash[0]!r}, which the scores would overwrite")
    col = {name: i for i, name in enumerate(header)}
    absent = [c for c in [*schema.numeric, *schema.categorical] if c not in col]
    if absent:
        raise DataError(f"{path}: missing feature column(s) {absent}; the file has {header}")
    x, missing, unknown = encode_features(path, col, rows, schema)
    score = sigmoid(predict(model, params, x))
    rank = ranks(score)
    return Scored(header, rows, score, rank, deciles(rank), dict(missing), dict(unknown))


def write_scores(scored: Scored, out: TextIO, top: int | None = None) -> int:
    """Write the scored rows as CSV (file order, or the `top` best, best first); returns the rows written."""
    order = np.arange(len(scored.rows)) if top is None else np.argsort(scored.rank, kind="stable")[:top]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*scored.header, *OUTPUT_COLUMNS])
    for i in order:
        writer.writerow(
            [*scored.rows[i], f"{scored.score[i]:.6f}", str(int(scored.rank[i])), str(int(scored.decile[i]))]
        )
    return len(order)
