"""A party's rows for vertical federation: its match keys and its own columns, checked.

Each party of a cross-domain task holds different columns of (partly) the same
customers, keyed by an identifier column (a loyalty id, a hashed e-mail). The
identifier is only ever a PSI input (`node.vertical.psi`): after alignment the
rows are indexed by random sample ids. Errors are one line and say what and how
many: a missing id column, empty or repeated ids, a party's columns overlapping
another's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.learn.data import DataError, read_rows

__all__ = ["PartyData", "check_disjoint", "load_party"]


@dataclass(frozen=True)
class PartyData:
    """One party's match keys (one per row, unique) and the cells of its own columns."""

    name: str
    ids: list[str]
    columns: list[str]
    rows: list[list[str]]
    source: Path = Path("<memory>")  # the file the rows came from, for error messages

    def aligned(self, rows: Sequence[int]) -> list[list[str]]:
        """The cells of `rows` (aligned row indices, in the order training will use)."""
        return [self.rows[r] for r in rows]


def load_party(path: Path, name: str, id_column: str, columns: Sequence[str] | None = None) -> PartyData:
    """`path`'s id column and its other columns (or only `columns`)."""
    header, body = read_rows(path)
    if id_column not in header:
        raise DataError(f"{path}: no id column {id_column!r} (columns: {', '.join(header)})")
    wanted = [c for c in header if c != id_column] if columns is None else list(columns)
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} for party {name!r}")
    if id_column in wanted:
        raise DataError(f"{path}: the id column {id_column!r} cannot also be a feature of party {name!r}")
    at = header.index(id_column)
    ids = [r[at].strip() for r in body]
    empty = sum(1 for k in ids if not k)
    if empty:
        raise DataError(f"{path}: {empty} rows have no {id_column!r}")
    repeated = {k: n for k, n in Counter(ids).items() if n > 1}
    if repeated:
        example = sorted(repeated)[0]
        raise DataError(
            f"{path}: {len(repeated)} {id_column!r} values repeat ({sum(repeated.values())} rows; "
            f"e.g. {example!r} {repeated[example]} times): a party needs one row per customer"
        )
    index = [header.index(c) for c in wanted]
    return PartyData(name, ids, wanted, [[r[i] for i in index] for r in body], path)


def check_disjoint(parties: Mapping[str, Sequence[str]]) -> None:
    """Refuse a column held by two parties: each column has one owner (else one party's value would
    be measured on another's data)."""
    owner: dict[str, str] = {}
    for name, columns in parties.items():
        for c in columns:
            if c in owner:
                raise DataError(
                    f"column {c!r} is held by both {owner[c]!r} and {name!r}: parties' columns must not overlap"
                )
            owner[c] = name
