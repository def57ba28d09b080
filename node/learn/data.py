"""A peer's private CSV: the schema the federation fixed, loading, and clear errors.

The schema lives in the federation spec's `[data]` table, so every peer encodes
features the same way without revealing its rows:

    [data]
    target = "y"                  # label column
    positive = "yes"              # the label value that counts as 1, as the file shows it
    numeric = { age = [40.9, 10.6], balance = [1362.3, 3044.8] }   # column = [center, scale]
    categorical = { job = ["admin.", "blue-collar"] }              # column = vocabulary
    ignore = ["customer_id"]      # columns to leave out on purpose

Numeric columns become (value - center) / scale; a categorical column becomes a
one-hot vector over its vocabulary plus one "other" slot, which takes unknown
categories. An empty cell, or one that says NaN (any case, as pandas and numpy
write a missing number), is a missing value: numeric ones are imputed with the
center (0 after scaling), categorical ones go to "other"; every peer does the
same, and the load report counts them. Other markers ("NA", "null", "-") are
not guessed at: in a categorical column they may be real values.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from node.errors import NodeError

__all__ = [
    "DataError",
    "Dataset",
    "Schema",
    "encode_features",
    "encode_labels",
    "infer_schema",
    "load_csv",
    "read_rows",
]

_TRUE = {"1", "true", "yes", "y", "t"}


def _missing(cell: str) -> bool:
    """A stripped cell that holds no value: blank, or NaN in any case."""
    return not cell or cell.lower() == "nan"


class DataError(NodeError):
    """A CSV does not fit the federation's schema; the message names file, column and row."""


@dataclass(frozen=True)
class Schema:
    target: str
    positive: str
    numeric: dict[str, tuple[float, float]]
    categorical: dict[str, list[str]]
    ignore: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(len(v) + 1 for v in self.categorical.values())

    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for col, vocab in self.categorical.items():
            names += [f"{col}={v}" for v in vocab] + [f"{col}=<other>"]
        return names

    def restricted(self, columns: Iterable[str]) -> Schema:
        """This schema over `columns` only (a vertical party's part), the target kept."""
        cols = list(columns)
        return Schema(
            self.target,
            self.positive,
            {c: self.numeric[c] for c in cols if c in self.numeric},
            {c: self.categorical[c] for c in cols if c in self.categorical},
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "positive": self.positive,
            "numeric": {k: [c, s] for k, (c, s) in self.numeric.items()},
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "ignore": list(self.ignore),
        }

    @classmethod
    def from_spec(cls, table: Mapping[str, Any]) -> Schema:
        try:
            numeric = {str(k): (float(v[0]), float(v[1])) for k, v in dict(table.get("numeric", {})).items()}
            categorical = {str(k): [str(x) for x in v] for k, v in dict(table.get("categorical", {})).items()}
            ignore = [str(c) for c in table.get("ignore", [])]
            schema = cls(str(table["target"]), str(table["positive"]), numeric, categorical, ignore)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataError(f"spec [data] is incomplete or malformed: {exc}") from exc
        if any(scale <= 0 or not math.isfinite(scale) for _, scale in numeric.values()):
            raise DataError("spec [data] numeric: every scale must be a positive number")
        if not numeric and not categorical:
            raise DataError("spec [data] names no feature columns")
        return schema


@dataclass
class Dataset:
    """Encoded features and labels, with what loading had to fix."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32]
    missing: dict[str, int]
    unknown_categories: dict[str, int]
    source: str

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: npt.NDArray[np.int64]) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.missing, self.unknown_categories, self.source)


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a CSV file (comma, semicolon or tab separated)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8-sig") as fh:
                text = fh.read()
        else:
            text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({exc})") from exc
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: the file is empty")
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    rows = list(csv.reader(lines, dialect))
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        dupes = sorted(h for h, c in Counter(header).items() if c > 1)
        raise DataError(f"{path}: column names repeat: {dupes}")
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise DataError(f"{path}: the file has a header but no rows")
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{path}, row {i + 2}: {len(r)} cells, the header has {len(header)}")
    return header, body


def _label(value: str, positive: str) -> float:
    v, p = value.strip(), positive.strip()
    if v.lower() == p.lower():
        return 1.0
    if p.lower() in _TRUE and v.lower() in _TRUE:
        return 1.0
    return 0.0


def load_csv(path: Path, schema: Schema) -> Dataset:
    """Encode `path` with `schema`; raises DataError naming the file, column and row of a problem."""
    header, rows = read_rows(path)
    col = {name: i for i, name in enumerate(header)}
    needed = [schema.target, *schema.numeric, *schema.categorical]
    missing_cols = [c for c in needed if c not in col]
    if missing_cols:
        raise DataError(f"{path}: missing column(s) {missing_cols}; the file has {header}")
    x, missing, unknown = encode_features(path, col, rows, schema)
    y = encode_labels(path, [r[col[schema.target]] for r in rows], schema.target, schema.positive)
    return Dataset(x, y, dict(missing), dict(unknown), str(path))


def encode_labels(path: Path, cells: Sequence[str], target: str, positive: str) -> npt.NDArray[np.float32]:
    """The 0/1 labels of the `target` column's `cells`; an empty label or a single class raises DataError."""
    for i, cell in enumerate(cells):
        if _missing(cell.strip()):
            raise DataError(f"{path}, row {i + 2}, column {target!r}: the label is empty")
    y = np.array([_label(c, positive) for c in cells], dtype=np.float32)
    if y.min() == y.max():
        _check_positive(path, target, positive, cells)
        seen = sorted({c.strip() for c in cells})[:5]
        raise DataError(f"{path}, column {target!r}: only one class (positive = {positive!r}; values seen: {seen})")
    return y


def encode_features(
    path: Path, col: Mapping[str, int], rows: Sequence[Sequence[str]], schema: Schema
) -> tuple[npt.NDArray[np.float32], Counter[str], Counter[str]]:
    """The feature matrix of `rows` (cells by `col`umn index) under `schema`, with the missing and
    unknown-category counts per column; a bad cell raises DataError naming `path`, row and column."""
    x = np.zeros((len(rows), schema.n_features), dtype=np.float32)
    missing: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    for j, (name, (center, scale)) in enumerate(schema.numeric.items()):
        ci = col[name]
        for i, r in enumerate(rows):
            cell = r[ci].strip()
            if _missing(cell):
                missing[name] += 1
                continue
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{path}, row {i + 2}, column {name!r}: {cell!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"{path}, row {i + 2}, column {name!r}: {cell!r} is not a finite number")
            x[i, j] = (value - center) / scale
    offset = len(schema.numeric)
    for name, vocab in schema.categorical.items():
        ci, index = col[name], {v: k for k, v in enumerate(vocab)}
        for i, r in enumerate(rows):
            cell = r[ci].strip()
            if _missing(cell):
                missing[name] += 1
                cell = ""  # the "other" slot, whatever the vocabulary holds
            elif cell not in index:
                unknown[name] += 1
            x[i, offset + index.get(cell, len(vocab))] = 1.0
        offset += len(vocab) + 1
    return x, missing, unknown


def _check_positive(path: Path, target: str, positive: str, labels: Iterable[str]) -> None:
    """Refuse a positive label value that no row of the target column holds, naming those it does."""
    values = sorted({v.strip() for v in labels if not _missing(v.strip())})
    if not any(_label(v, positive) for v in values):
        shown = ", ".join(repr(v) for v in values[:10]) + (f" and {len(values) - 10} more" if len(values) > 10 else "")
        raise DataError(f"{path}, column {target!r}: no row has the positive value {positive!r}; it holds {shown}")


def _is_number(cells: Iterable[str]) -> bool:
    try:
        for c in cells:
            if not _missing(c):
                float(c)
    except ValueError:
        return False
    return True


def infer_columns(
    header: Sequence[str], rows: Sequence[Sequence[str]], names: Iterable[str], max_vocab: int = 50
) -> tuple[dict[str, tuple[float, float]], dict[str, list[str]], list[str]]:
    """Each of `names` as a numeric column (center, scale: the mean and standard deviation of its
    values) or a categorical one (its `max_vocab` most common values); a column unique per row (an id)
    is neither, with a warning. Returns the numeric columns, the categorical ones and the warnings."""
    warnings: list[str] = []
    numeric: dict[str, tuple[float, float]] = {}
    categorical: dict[str, list[str]] = {}
    for name in names:
        i = list(header).index(name)
        cells = [r[i].strip() for r in rows]
        present = [c for c in cells if not _missing(c)]
        if len(rows) > 20 and len(set(present)) == len(rows):
            warnings.append(f"column {name!r} is unique per row (an ID?): left out")
        elif present and _is_number(present):
            values = np.array([float(c) for c in present])
            std = float(values.std())
            numeric[name] = (round(float(values.mean()), 6), round(std, 6) if std > 0 else 1.0)
        else:
            counts = Counter(present)
            vocab = sorted(v for v, _ in counts.most_common(max_vocab))
            if len(counts) > max_vocab:
                warnings.append(f"column {name!r} has {len(counts)} categories: the rarest go to 'other'")
            categorical[name] = vocab
    return numeric, categorical, warnings


def infer_schema(
    path: Path, target: str, positive: str, drop: Iterable[str] = (), max_vocab: int = 50
) -> tuple[Schema, list[str]]:
    """A schema from a CSV (for demos and a first spec); returns it and warnings.

    Numeric centers and scales are this file's mean and standard deviation:
    a federation that must not reveal them fixes rounder values in its spec.
    A column unique per row (an ID) is left out with a warning.
    """
    header, rows = read_rows(path)
    if target not in header:
        raise DataError(f"{path}: no target column {target!r}; the file has {header}")
    _check_positive(path, target, positive, [r[header.index(target)] for r in rows])
    ignore = [c for c in drop if c in header]
    names = [c for c in header if c != target and c not in ignore]
    numeric, categorical, warnings = infer_columns(header, rows, names, max_vocab)
    ignore += [c for c in names if c not in numeric and c not in categorical]
    return Schema(target, positive, numeric, categorical, ignore), warnings
