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

Files are read by pyarrow's CSV reader (C++, in parallel blocks), every cell as
a string, and encoded a column at a time with Arrow's kernels and numpy: a
million rows of 50 columns load in seconds (bench/results/csvload.md), and
encode to the same bits as the Python loop this replaced. A number is what
Arrow's parser reads as one (digits, a sign, a point, an exponent; not `1_000`).
"""

from __future__ import annotations

import csv
import gzip
import math
import stat
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from node.errors import NodeError

__all__ = [
    "DataError",
    "Dataset",
    "Schema",
    "Table",
    "encode_columns",
    "encode_features",
    "encode_labels",
    "infer_schema",
    "load_csv",
    "read_rows",
    "read_table",
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
        for col, vocab in categorical.items():  # each value one slot: a repeat or a blank would be ambiguous
            if len(set(vocab)) != len(vocab) or any(not v.strip() for v in vocab):
                raise DataError(f"spec [data] categorical {col!r}: a value repeats or is blank")
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


@dataclass(frozen=True)
class Table:
    """A CSV read by pyarrow's reader: every cell a string, in columns, blank rows left out."""

    header: list[str]
    raw: dict[str, pa.ChunkedArray]  # each column's cells as the file has them

    def __len__(self) -> int:
        return len(self.raw[self.header[0]]) if self.header else 0

    def column(self, name: str) -> pa.ChunkedArray:
        """Column `name`'s cells, surrounding white space stripped."""
        return pc.utf8_trim_whitespace(self.raw[name])

    def rows(self) -> list[list[str]]:
        """The cells row by row, as the file has them (for the callers that walk rows)."""
        return [list(r) for r in zip(*(self.raw[h].to_pylist() for h in self.header), strict=True)]


def _source(path: Path) -> Callable[[], Any]:
    """What pyarrow reads, as often as it is asked: the file's path, or, for a pipe or a FIFO (which
    can be read once), its bytes read here once (gunzipped when the name ends in .gz)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory, not a CSV file")
    if stat.S_ISREG(mode):
        return lambda: str(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    return lambda: pa.BufferReader(data)


def _head(path: Path, source: Callable[[], Any]) -> tuple[list[str], csv.Dialect]:
    """The header of `path` and the dialect its first line shows (comma, semicolon or tab)."""
    try:
        with pa.input_stream(source(), compression="detect") as raw:
            first = raw.read(1 << 16).split(b"\n", 1)[0]
        line = first.decode("utf-8-sig")
    except (OSError, EOFError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({exc})") from exc
    if not line.strip():
        raise DataError(f"{path}: the file is empty")
    try:
        dialect: csv.Dialect = csv.Sniffer().sniff(line, delimiters=",;\t")  # type: ignore[assignment]
    except csv.Error:
        dialect = csv.excel()
    header = [h.strip() for h in next(csv.reader([line.rstrip("\r")], dialect))]
    if len(set(header)) != len(header):
        dupes = sorted(h for h, c in Counter(header).items() if c > 1)
        raise DataError(f"{path}: column names repeat: {dupes}")
    return header, dialect


def _read_arrow(source: Any, header: list[str], dialect: csv.Dialect, threads: bool) -> tuple[pa.Table, Any]:
    """The body as string columns named by position, and the first row whose cell count is wrong (a
    line of white space and delimiters only is a blank row, left out). A quoted cell may hold a newline."""
    delimiter = str(dialect.delimiter)
    ragged: list[Any] = []

    def invalid(row: Any) -> str:
        if not ragged and row.text.replace(delimiter, "").strip():
            ragged.append(row)
        return "skip"

    names = [f"c{i}" for i in range(len(header))]
    table = pcsv.read_csv(
        source,
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, use_threads=threads),
        parse_options=pcsv.ParseOptions(
            delimiter=delimiter,
            quote_char=str(dialect.quotechar or '"'),
            newlines_in_values=True,
            invalid_row_handler=invalid,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    return table, ragged[0] if ragged else None


def read_table(path: Path) -> Table:
    """`path` (a CSV, or a gzipped one; a file, a pipe or a FIFO) read by pyarrow: a clear DataError for
    a missing, unreadable or empty file, repeated column names, or a row whose cell count differs from
    the header's."""
    source = _source(path)
    header, dialect = _head(path, source)
    undecodable: list[BaseException] = []  # a bad row's text that is not UTF-8 fails in pyarrow's callback
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: undecodable.append(u.exc_value or Exception())
    try:
        table, ragged = _read_arrow(source(), header, dialect, threads=True)
        if ragged is not None and ragged.number is None:  # the reader numbers rows only when read in order
            _, ragged = _read_arrow(source(), header, dialect, threads=False)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "UTF8" in first or "UTF-8" in first or any(isinstance(e, UnicodeDecodeError) for e in undecodable):
            raise DataError(f"{path}: cannot be read as UTF-8 text ({first})") from exc
        if "skip initial" in first:  # a header line and nothing after it, not even a newline
            raise DataError(f"{path}: the file has a header but no rows") from exc
        raise DataError(f"{path}: cannot be read as CSV ({first})") from exc
    finally:
        sys.unraisablehook = hook
    if ragged is not None:
        where = f"row {ragged.number}" if ragged.number is not None else "a row"
        raise DataError(f"{path}, {where}: {ragged.actual_columns} cells, the header has {ragged.expected_columns}")
    raw = {h: table.column(i) for i, h in enumerate(header)}
    blank = None
    for col in raw.values():  # a row whose every cell is blank (a spreadsheet's trailing ",,,") is left out
        empty = pc.equal(pc.utf8_trim_whitespace(col), "")
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is not None and pc.any(blank).as_py():
        keep = pc.invert(blank)
        raw = {h: pc.filter(c, keep) for h, c in raw.items()}
    out = Table(header, raw)
    if len(out) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    return out


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a CSV file (comma, semicolon or tab separated); see `read_table`."""
    table = read_table(path)
    return table.header, table.rows()


def _strings(cells: Sequence[str] | pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """`cells` as an Arrow string array, white space stripped."""
    if not isinstance(cells, pa.ChunkedArray | pa.Array):
        cells = pa.array(list(cells), pa.string())
    return pc.utf8_trim_whitespace(cells)


def _missing_mask(cells: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.bool_]:
    """Which stripped `cells` hold no value: blank, or NaN in any case."""
    return np.asarray(pc.or_(pc.equal(cells, ""), pc.equal(pc.utf8_lower(cells), "nan")).to_numpy(zero_copy_only=False))


def _first_unparsable(cells: pa.ChunkedArray | pa.Array) -> int:
    """The index of the first of `cells` (which do not all parse) that is not a number: bisection on
    prefixes, each parsed by the same cast as the whole column."""
    lo, hi = 0, len(cells)  # cells[:lo] parse, cells[:hi] do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(cells.slice(0, mid), pa.float64())
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return hi - 1


def _label_mask(cells: pa.ChunkedArray | pa.Array, positive: str) -> npt.NDArray[np.bool_]:
    """Which stripped label `cells` count as the positive class (any case; any true-like value when
    `positive` is one)."""
    low = pc.utf8_lower(cells)
    p = str(pc.utf8_lower(pa.scalar(positive.strip(), pa.string())).as_py())  # as the cells: Arrow's lowercase
    hit = pc.equal(low, p)
    if p in _TRUE:
        hit = pc.or_(hit, pc.is_in(low, value_set=pa.array(sorted(_TRUE), pa.string())))
    return np.asarray(hit.to_numpy(zero_copy_only=False))


def load_csv(path: Path, schema: Schema) -> Dataset:
    """Encode `path` with `schema`; raises DataError naming the file, column and row of a problem."""
    table = read_table(path)
    needed = [schema.target, *schema.numeric, *schema.categorical]
    missing_cols = [c for c in needed if c not in table.raw]
    if missing_cols:
        raise DataError(f"{path}: missing column(s) {missing_cols}; the file has {table.header}")
    x, missing, unknown = encode_columns(path, table.column, len(table), schema)
    y = encode_labels(path, table.column(schema.target), schema.target, schema.positive)
    return Dataset(x, y, dict(missing), dict(unknown), str(path))


def encode_labels(
    path: Path, cells: Sequence[str] | pa.ChunkedArray | pa.Array, target: str, positive: str
) -> npt.NDArray[np.float32]:
    """The 0/1 labels of the `target` column's `cells`; an empty label or a single class raises DataError."""
    s = _strings(cells)
    empty = _missing_mask(s)
    if empty.any():
        raise DataError(f"{path}, row {int(empty.argmax()) + 2}, column {target!r}: the label is empty")
    y = _label_mask(s, positive).astype(np.float32)
    if y.min() == y.max():
        values = [str(v) for v in pc.unique(s).to_pylist()]
        _check_positive(path, target, positive, values)
        raise DataError(
            f"{path}, column {target!r}: only one class (positive = {positive!r}; values seen: {sorted(values)[:5]})"
        )
    return y


def encode_features(
    path: Path, col: Mapping[str, int], rows: Sequence[Sequence[str]], schema: Schema
) -> tuple[npt.NDArray[np.float32], Counter[str], Counter[str]]:
    """`encode_columns` for rows (cells by `col`umn index)."""
    return encode_columns(path, lambda name: _strings([r[col[name]] for r in rows]), len(rows), schema)


def encode_columns(
    path: Path, column: Callable[[str], pa.ChunkedArray | pa.Array], n: int, schema: Schema
) -> tuple[npt.NDArray[np.float32], Counter[str], Counter[str]]:
    """The feature matrix of `n` rows under `schema`, each column's stripped cells from `column`, with
    the missing and unknown-category counts per column; a bad cell raises DataError naming `path`,
    row and column (rows count from 2: the header is row 1)."""
    x = np.zeros((n, schema.n_features), dtype=np.float32)
    missing: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    scaled = np.empty((len(schema.numeric), n), dtype=np.float32)  # a column a row: written in one pass each
    for j, (name, (center, scale)) in enumerate(schema.numeric.items()):
        cells = column(name)
        absent = _missing_mask(cells)
        filled = pc.if_else(pa.array(absent), "0", cells) if absent.any() else cells
        try:
            values = np.asarray(pc.cast(filled, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        except pa.ArrowInvalid:
            i = _first_unparsable(filled)
            raise DataError(f"{path}, row {i + 2}, column {name!r}: {filled[i].as_py()!r} is not a number") from None
        finite = np.isfinite(values)
        if not finite.all():
            i = int(finite.argmin())
            raise DataError(f"{path}, row {i + 2}, column {name!r}: {cells[i].as_py()!r} is not a finite number")
        scaled[j] = np.where(absent, 0.0, (values - center) / scale)  # a missing value takes the center
        if absent.any():
            missing[name] += int(absent.sum())
    x[:, : len(schema.numeric)] = scaled.T  # a column at a time into rows of 200 features: 7x slower
    del scaled
    offset = len(schema.numeric)
    flat, starts = x.reshape(-1), np.arange(n, dtype=np.int64) * schema.n_features  # each row's first cell
    for name, vocab in schema.categorical.items():
        cells = column(name)
        absent = _missing_mask(cells)
        found = pc.index_in(cells, value_set=pa.array(vocab, pa.string()))
        slot = np.asarray(pc.fill_null(found, len(vocab)).to_numpy(zero_copy_only=False), dtype=np.int64)
        strange = (slot == len(vocab)) & ~absent
        slot[absent] = len(vocab)  # the "other" slot, whatever the vocabulary holds
        flat[starts + (offset + slot)] = 1.0  # one flat index: 13x faster than x[rows, columns]
        if absent.any():
            missing[name] += int(absent.sum())
        if strange.any():
            unknown[name] += int(strange.sum())
        offset += len(vocab) + 1
    return x, missing, unknown


def _check_positive(path: Path, target: str, positive: str, labels: Iterable[str]) -> None:
    """Refuse a positive label value that no row of the target column holds, naming those it does."""
    values = sorted({v.strip() for v in labels if not _missing(v.strip())})
    if not _label_mask(pa.array(values, pa.string()), positive).any():
        shown = ", ".join(repr(v) for v in values[:10]) + (f" and {len(values) - 10} more" if len(values) > 10 else "")
        raise DataError(f"{path}, column {target!r}: no row has the positive value {positive!r}; it holds {shown}")


def _is_number(cells: Iterable[str]) -> bool:
    """Whether every present cell is a number as `load_csv` reads one (Arrow's parser, not Python's
    `float`, which also takes `1_000` and other scripts' digits)."""
    present = [c for c in cells if not _missing(c)]
    try:
        pc.cast(pa.array(present, pa.string()), pa.float64())
    except pa.ArrowInvalid:
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
