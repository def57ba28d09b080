"""CSV loading against the federation schema: messy data, and clear errors for bad data."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from node.datasets import DEFAULT_DATA
from node.learn.data import DataError, Schema, infer_schema, load_csv

SCHEMA = Schema(
    target="bought",
    positive="yes",
    numeric={"age": (40.0, 10.0), "spend": (100.0, 50.0)},
    categorical={"tier": ["gold", "silver"]},
)


def write(tmp_path: Path, text: str, name: str = "crm.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_encodes_features_and_imputes_missing_cells(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "id,age,spend,tier,bought\n1,50,150,gold,yes\n2,,100,bronze,no\n3,30,,,no\n4,40,50,silver,YES\n",
    )
    d = load_csv(p, SCHEMA)
    assert d.x.shape == (4, 2 + 3)
    assert d.y.tolist() == [1, 0, 0, 1]  # positive matches case-insensitively
    assert d.x[0].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert d.x[1].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]  # missing age -> center; bronze -> other
    assert d.missing == {"age": 1, "spend": 1, "tier": 1}
    assert d.unknown_categories == {"tier": 1}


@pytest.mark.parametrize("marker", ["NaN", "nan", "NAN", " nan "])
def test_a_nan_cell_is_missing_like_a_blank_one(tmp_path: Path, marker: str) -> None:
    blank = write(tmp_path, "age,spend,tier,bought\n50,150,gold,yes\n,100,,no\n30,50,silver,no\n", "blank.csv")
    nan = write(tmp_path, blank.read_text().replace("\n,100,,no", f"\n{marker},100,{marker},no"), "nan.csv")
    a, b = load_csv(blank, SCHEMA), load_csv(nan, SCHEMA)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert b.missing == {"age": 1, "tier": 1} and b.unknown_categories == {}
    schema, _ = infer_schema(nan, "bought", "yes")  # inferred alike: age stays numeric, nan is no category
    assert schema == infer_schema(blank, "bought", "yes")[0]
    assert "age" in schema.numeric and schema.categorical["tier"] == ["gold", "silver"]


def test_a_positive_value_absent_from_the_target_is_named_with_the_values_present(tmp_path: Path) -> None:
    p = write(tmp_path, "age,spend,tier,bought\n1,2,gold,yes\n3,4,gold,no\n")
    with pytest.raises(DataError, match=r"no row has the positive value 'maybe'; it holds 'no', 'yes'"):
        infer_schema(p, "bought", "maybe")
    with pytest.raises(DataError, match=r"no row has the positive value 'maybe'; it holds 'no', 'yes'"):
        load_csv(p, Schema("bought", "maybe", SCHEMA.numeric, SCHEMA.categorical))


def test_semicolons_and_boolean_labels(tmp_path: Path) -> None:
    p = write(tmp_path, "age;spend;tier;bought\n50;1;gold;true\n20;2;gold;False\n")
    d = load_csv(p, Schema("bought", "True", SCHEMA.numeric, SCHEMA.categorical))
    assert d.y.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("age,spend,tier,bought\n", "no rows"),
        ("age,spend,tier\n1,2,gold\n", "missing column(s) ['bought']"),
        ("age,tier,bought\n1,gold,yes\n", "missing column(s) ['spend']"),
        ("age,spend,tier,bought\n1,2,gold,yes\n3,lots,gold,no\n", "row 3, column 'spend': 'lots' is not a number"),
        ("age,spend,tier,bought\n1,2,gold,yes\n3,4,gold,yes\n", "only one class"),
        ("age,spend,tier,bought\n1,2,gold,no\n3,4,gold,No\n", "no row has the positive value 'yes'"),
        ("age,spend,tier,bought\n1,2,gold,yes\n3,4,gold,nan\n", "the label is empty"),
        ("age,spend,tier,bought\n1,2,gold,yes\n3,4,gold\n", "row 3: 3 cells"),
        ("age,spend,tier,bought\n1,2,gold,\n3,4,gold,no\n", "the label is empty"),
        ("age,age,tier,bought\n1,2,gold,yes\n", "repeat"),
        ("age,spend,tier,bought\n1,inf,gold,yes\n2,3,gold,no\n", "not a finite number"),
    ],
)
def test_bad_csv_names_file_column_and_row(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_csv(p, SCHEMA)
    assert message in str(err.value)
    assert str(p) in str(err.value)


def test_blank_rows_gzip_tabs_and_quoted_cells_read_like_a_spreadsheet_export(tmp_path: Path) -> None:
    """A row of blank cells (a spreadsheet's trailing ",,,") or of white space is left out; a gzipped
    or tab-separated file reads the same; a quoted cell may hold the delimiter."""
    text = 'age,spend,tier,bought\n50,150,"gold",yes\n ,,, \n\n   \n40,50,silver,no\n,,,\n'
    plain = load_csv(write(tmp_path, text), SCHEMA)
    assert len(plain) == 2 and plain.y.tolist() == [1, 0]
    packed = tmp_path / "crm.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    tabs = write(tmp_path, text.replace(",", "\t"), "crm.tsv")
    for other in (load_csv(packed, SCHEMA), load_csv(tabs, SCHEMA)):
        assert np.array_equal(other.x, plain.x) and np.array_equal(other.y, plain.y)
    quoted = load_csv(
        write(tmp_path, 'age,spend,tier,bought\n50,150,"gold, old",yes\n40,50,gold,no\n', "q.csv"), SCHEMA
    )
    assert quoted.unknown_categories == {"tier": 1}


def test_a_bad_row_deep_in_a_large_file_is_named_by_its_row(tmp_path: Path) -> None:
    """The reader parses a large file in parallel blocks; an error still names the row it is on."""
    good = "".join(
        f"{i % 90},{i % 500},{'gold' if i % 2 else 'silver'},{'yes' if i % 3 else 'no'}\n" for i in range(150_000)
    )
    head = "age,spend,tier,bought\n"
    with pytest.raises(DataError, match=r"row 150002: 3 cells, the header has 4"):
        load_csv(write(tmp_path, head + good + "1,2,gold\n" + good[:1000], "ragged.csv"), SCHEMA)
    with pytest.raises(DataError, match=r"row 120002, column 'spend': 'lots' is not a number"):
        rows = good.splitlines()
        rows[120_000] = "7,lots,gold,no"
        load_csv(write(tmp_path, head + "\n".join(rows) + "\n", "word.csv"), SCHEMA)


def test_notes_with_newlines_pipes_and_fifos_read_like_files(tmp_path: Path) -> None:
    """A quoted cell holding a newline (a CRM's notes) in a file of many parallel blocks, and the same
    rows through a FIFO, which can be read only once."""
    rows = "".join(
        f'{i % 90},{i % 500},gold,{"yes" if i % 3 else "no"},"call {i}\nthen write, twice"\n' for i in range(60_000)
    )
    notes = write(tmp_path, "age,spend,tier,bought,note\n" + rows, "notes.csv")
    assert notes.stat().st_size > 2**21
    d = load_csv(notes, SCHEMA)
    assert len(d) == 60_000
    fifo = tmp_path / "crm.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(notes.read_bytes()))
    writer.start()
    try:
        piped = load_csv(fifo, SCHEMA)
    finally:
        writer.join(30)
    assert np.array_equal(piped.x, d.x) and np.array_equal(piped.y, d.y)


def test_a_number_is_what_the_loader_reads_as_one_and_a_spec_vocabulary_has_no_repeats(tmp_path: Path) -> None:
    p = write(tmp_path, "visits,bought\n" + "".join(f"1_{i % 5:03d},{'yes' if i % 2 else 'no'}\n" for i in range(30)))
    schema, _ = infer_schema(p, "bought", "yes")  # Python's float reads 1_000; the loader does not
    assert "visits" in schema.categorical and len(load_csv(p, schema)) == 30
    for vocab in (["gold", "gold"], ["gold", " "]):
        with pytest.raises(DataError, match=r"categorical 'tier': a value repeats or is blank"):
            Schema.from_spec({**SCHEMA.to_spec(), "categorical": {"tier": vocab}})


def test_missing_file_and_binary_garbage(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "nope.csv", SCHEMA)
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError):
        load_csv(p, SCHEMA)
    latin = tmp_path / "latin1.csv"  # a header in ASCII, a row in Latin-1 further down
    latin.write_bytes(b"age,spend,tier,bought\n50,150,gold,yes\n40,50,caf\xe9,no\n")
    with pytest.raises(DataError, match=r"latin1\.csv: cannot be read as UTF-8 text"):
        load_csv(latin, SCHEMA)
    with pytest.raises(DataError, match=r"is a directory"):
        load_csv(tmp_path, SCHEMA)
    deep = tmp_path / "deep.csv"  # past the first block, a short row that is not UTF-8 either
    deep.write_bytes(b"age,spend,tier,bought\n" + b"50,150,gold,yes\n40,50,gold,no\n" * 20_000 + b"1,caf\xe9\n")
    with pytest.raises(DataError, match=r"deep\.csv: cannot be read as UTF-8 text"):
        load_csv(deep, SCHEMA)
    with pytest.raises(DataError, match=r"the file has a header but no rows"):
        load_csv(write(tmp_path, "age,spend,tier,bought", "bare.csv"), SCHEMA)  # no newline after it


def test_infer_schema_on_the_bundled_data_leaves_out_leaks_and_ids(tmp_path: Path) -> None:
    schema, _ = infer_schema(DEFAULT_DATA, "y", "yes", drop=["duration"])
    assert "duration" not in schema.numeric and "y" not in schema.numeric
    assert {"age", "balance", "pdays"} <= set(schema.numeric)
    assert "admin." in schema.categorical["job"]
    d = load_csv(DEFAULT_DATA, schema)
    assert d.x.shape == (45211, schema.n_features)
    assert abs(float(d.y.mean()) - 0.117) < 0.001
    rows = "\n".join(f"c{i},{i % 7},{'yes' if i % 3 else 'no'}" for i in range(40))
    _, warns = infer_schema(write(tmp_path, "customer_id,visits,bought\n" + rows), "bought", "yes")
    assert any("customer_id" in w and "unique" in w for w in warns)


def test_schema_round_trips_through_the_spec() -> None:
    assert Schema.from_spec(SCHEMA.to_spec()) == SCHEMA
    with pytest.raises(DataError, match="scale"):
        Schema.from_spec({**SCHEMA.to_spec(), "numeric": {"age": [0, 0]}})
    with pytest.raises(DataError, match="incomplete"):
        Schema.from_spec({"positive": "yes"})
    assert np.isclose(SCHEMA.n_features, 5)


def test_the_walkthrough_files_come_from_the_bundled_data(tmp_path: Path) -> None:
    from node.datasets.sample import main

    assert main(["--out-dir", str(tmp_path)]) == 0
    sample, bank, hotel = (
        load_csv(tmp_path / n, infer_schema(tmp_path / "sample.csv", "y", "yes", ["duration"])[0])
        for n in ("sample.csv", "bank.csv", "hotel.csv")
    )
    assert len(sample) == 45211 // 7 and len(bank) + len(hotel) + len(sample) == 45211
    assert abs(len(bank) - len(hotel)) <= 1 and 0.08 < float(bank.y.mean()) < 0.16
    header, *prospects = (tmp_path / "prospects.csv").read_text().splitlines()
    assert header.startswith("customer_id,") and ",y" not in header and len(prospects) == len(sample)
    assert prospects[0].startswith("P00001,") and len(prospects[0].split(",")) == len(header.split(","))
    assert main(["--out-dir", str(tmp_path)]) == 1  # never overwrites
