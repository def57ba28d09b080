"""A vertical party's CSV: its id column and its own columns, and the one-line errors the issue names."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.learn.data import DataError
from node.vertical.data import check_disjoint, load_party
from node.vertical.psi import align_in_memory, task_tag


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_party_loads_its_ids_and_columns_and_aligns_with_another(tmp_path: Path) -> None:
    airline = write(tmp_path, "airline.csv", "loyalty,flights,booked\nA1,3,yes\nA2,0,no\nA3,7,yes\nA4,1,no\n")
    hotel = write(tmp_path, "hotel.csv", "loyalty;nights;spend\nA3;2;300\nA9;1;90\nA1;5;800\n")
    owner = load_party(airline, "airline", "loyalty")
    party = load_party(hotel, "hotel", "loyalty", ["nights"])
    assert (owner.ids, owner.columns, owner.rows[2]) == (["A1", "A2", "A3", "A4"], ["flights", "booked"], ["7", "yes"])
    assert (party.columns, party.rows) == (["nights"], [["2"], ["1"], ["5"]])
    check_disjoint({"airline": owner.columns, "hotel": party.columns})
    aligned, _ = align_in_memory(owner.ids, {"hotel": party.ids}, task_tag(1, "0x" + "00" * 20, 7))
    pairs = sorted(
        (owner.ids[aligned["owner"].rows[s]], party.ids[aligned["hotel"].rows[s]]) for s in aligned["owner"].rows
    )
    assert pairs == [("A1", "A1"), ("A3", "A3")]
    samples = list(aligned["owner"].rows)
    assert owner.aligned([aligned["owner"].rows[s] for s in samples]) != party.aligned(
        [aligned["hotel"].rows[s] for s in samples]
    )  # the same customers, each party's own columns


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("id,x\n1,2\n", {"id_column": "loyalty"}, r"no id column 'loyalty' \(columns: id, x\)$"),
        ("loyalty,x\n1,2\n", {"id_column": "loyalty", "columns": ["y"]}, r"no column 'y' for party 'p'$"),
        ("loyalty,x\n1,2\n", {"id_column": "loyalty", "columns": ["loyalty"]}, "cannot also be a feature"),
        ("loyalty,x\n,2\n3,4\n,5\n", {"id_column": "loyalty"}, r"2 rows have no 'loyalty'$"),
        (
            "loyalty,x\nA,1\nB,2\nA,3\nC,4\nB,5\nA,6\n",
            {"id_column": "loyalty"},
            r"2 'loyalty' values repeat \(5 rows; e\.g\. 'A' 3 times\): a party needs one row per customer$",
        ),
        ("loyalty,x\n", {"id_column": "loyalty"}, "a header but no rows"),
    ],
)
def test_bad_party_files_are_one_line_errors(
    tmp_path: Path, text: str, kwargs: dict[str, object], message: str
) -> None:
    path = write(tmp_path, "p.csv", text)
    with pytest.raises(DataError, match=message):
        load_party(path, "p", **kwargs)  # type: ignore[arg-type]


def test_a_column_held_by_two_parties_is_refused() -> None:
    with pytest.raises(DataError, match=r"^column 'age' is held by both 'bank' and 'hotel'"):
        check_disjoint({"bank": ["balance", "age"], "hotel": ["nights", "age"]})
