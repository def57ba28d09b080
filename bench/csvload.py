"""Loading a company's CSV: pyarrow's reader against the hand loop it replaced.

A peer loads its file with `node.learn.data.load_csv` (read, check, encode
under the federation's schema). The hand loop it replaced (the csv module over
the whole text, then a Python loop over every cell) is read from git at
BEFORE, so "before" is the code that shipped, not a copy kept for the bench.

For 100k and 1M rows x 50 columns (29 numeric, 20 categorical and a label;
1% of cells blank, a few categories outside the vocabulary), each loader runs
in a fresh process: seconds to load, and peak memory (the process's high-water
resident set, and what loading added to it). Both must encode the same bits.
The after loader runs once more with numpy's huge-page advice off
(NUMPY_MADVISE_HUGEPAGE=0): on a kernel that compacts memory on a fault, that
advice, not the parsing, can be most of the time.

Writes bench/results/csvload.md and csvload.json.

    .venv/bin/python -m bench.csvload [--rows 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from bench.results_file import REPO, progress, stamp, table, write
from node.learn.data import Schema

BEFORE = "2a6c739"  # the last commit with the hand-written loader
ROWS = (100_000, 1_000_000)
NUMERIC, CATEGORICAL = 29, 20
VOCAB = [f"v{k}" for k in range(8)]
REPEATS = {100_000: 3, 1_000_000: 1}
SMALL_PAGES = {"NUMPY_MADVISE_HUGEPAGE": "0"}  # numpy's own switch: no madvise(MADV_HUGEPAGE) on its arrays


def schema() -> Schema:
    """The federation's schema for the generated file (fixed, as a spec fixes it)."""
    numeric = {f"n{j}": (float(j), 10.0 + j) for j in range(NUMERIC)}
    categorical = {f"c{j}": VOCAB[:6] for j in range(CATEGORICAL)}  # v6, v7: unseen categories
    return Schema("bought", "yes", numeric, categorical)


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """A CRM-like CSV of `rows` rows x 50 columns, 1% of feature cells blank."""
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {}
    for j in range(NUMERIC):
        values = pc.cast(pa.array(np.round(rng.normal(j, 10.0 + j, rows), 2)), pa.string())
        columns[f"n{j}"] = pc.if_else(pa.array(rng.random(rows) < 0.01), "", values)
    for j in range(CATEGORICAL):
        picks = np.array(VOCAB, dtype=object)[rng.integers(0, len(VOCAB), rows)]
        picks[rng.random(rows) < 0.01] = ""
        columns[f"c{j}"] = pa.array(picks, pa.string())
    columns["bought"] = pa.array(np.where(rng.random(rows) < 0.12, "yes", "no"), pa.string())
    pcsv.write_csv(pa.table(columns), path, pcsv.WriteOptions(quoting_style="none"))


CHILD = """
import hashlib, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from loader import Schema, load_csv
def rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
schema = Schema.from_spec(json.loads(sys.argv[3]))
base = rss("VmRSS")
start = time.perf_counter()
d = load_csv(Path(sys.argv[2]), schema)
seconds = time.perf_counter() - start
digest = hashlib.sha256(d.x.tobytes() + d.y.tobytes()).hexdigest()
print(json.dumps({"seconds": seconds, "peak_mb": rss("VmHWM"), "added_mb": rss("VmHWM") - base, "digest": digest}))
"""


def loader_dir(root: Path, which: str) -> Path:
    """A directory whose `loader` module is the loader to measure: this checkout's, or BEFORE's from git."""
    where = root / which
    where.mkdir()
    if which == "after":
        (where / "loader.py").write_text("from node.learn.data import Schema, load_csv  # noqa: F401\n")
        return where
    try:
        old = subprocess.run(
            ["git", "show", f"{BEFORE}:node/learn/data.py"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"bench: cannot read the old loader from git ({BEFORE}): {exc}") from exc
    (where / "loader.py").write_text(old)
    return where


def run(loader: Path, data: Path, spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """One load of `data` by `loader` in a fresh process (with `env` added to its environment)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(loader), str(data), json.dumps(spec)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: the loader failed on {data.name}: {out.stderr.strip().splitlines()[-1]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def lines(runs: list[dict[str, Any]]) -> list[str]:
    """The results table (here and in BENCHMARKS.md)."""
    return table(
        [
            "rows x columns",
            "file MB",
            "before s",
            "after s",
            "faster",
            "before peak / added MB",
            "after peak / added MB",
            "less memory added",
            "same bits",
            "after, no huge-page advice s",
        ],
        [
            [
                f"{r['rows']:,} x {r['columns']}",
                f"{r['file_mb']:.0f}",
                f"{r['before']['seconds']:.2f}",
                f"{r['after']['seconds']:.2f}",
                f"{r['before']['seconds'] / r['after']['seconds']:.1f}x",
                f"{r['before']['peak_mb']:.0f} / {r['before']['added_mb']:.0f}",
                f"{r['after']['peak_mb']:.0f} / {r['after']['added_mb']:.0f}",
                f"{r['before']['added_mb'] / r['after']['added_mb']:.1f}x",
                "yes" if r["same_encoding"] else "NO",
                f"{r['after_small_pages']['seconds']:.2f}",
            ]
            for r in runs
        ],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=list(ROWS), help="row counts to measure")
    args = ap.parse_args(argv)
    spec = schema().to_spec()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loaders = {which: loader_dir(root, which) for which in ("before", "after")}
        total, i = 2 * len(args.rows), 0
        for rows in args.rows:
            data = root / f"crm-{rows}.csv"
            progress("csvload", f"generating {rows:,} rows")
            generate(data, rows)
            row: dict[str, Any] = {
                "rows": rows,
                "columns": NUMERIC + CATEGORICAL + 1,
                "file_mb": data.stat().st_size / 2**20,
            }
            for which, loader in loaders.items():
                i += 1
                progress("csvload", f"{rows:,} rows, the {which} loader ({i}/{total})")
                runs = [run(loader, data, spec) for _ in range(REPEATS.get(rows, 1))]
                row[which] = {
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "peak_mb": max(r["peak_mb"] for r in runs),
                    "added_mb": max(r["added_mb"] for r in runs),
                    "digest": runs[0]["digest"],
                }
            progress("csvload", f"{rows:,} rows, the after loader without huge-page advice")
            runs = [run(loaders["after"], data, spec, SMALL_PAGES) for _ in range(REPEATS.get(rows, 1))]
            row["after_small_pages"] = {"seconds": statistics.median(r["seconds"] for r in runs)}
            row["same_encoding"] = row["before"]["digest"] == row["after"]["digest"] == runs[0]["digest"]
            results.append(row)
            data.unlink()
    meta = stamp("numpy", "pyarrow")
    doc = [
        "# Loading a company's CSV: pyarrow against the hand loop",
        "",
        f"Measured {meta['date']} on {meta['machine']}; python {meta['python']}, numpy {meta['numpy']}, "
        f"pyarrow {meta['pyarrow']}. `load_csv` (read, check, encode under the schema) in a fresh process each "
        f"run; before = `node/learn/data.py` at {BEFORE} (the csv module and a loop over every cell), after = "
        "this checkout (pyarrow's reader, encoded column by column). Peak = the process's high-water resident "
        "set; added = peak less the resident set before loading (the interpreter and the loader's imports). "
        "The last column: the after loader again with NUMPY_MADVISE_HUGEPAGE=0. numpy advises the kernel "
        "to back its large arrays with huge pages; where the kernel then compacts memory on the fault "
        "(transparent_hugepage/defrag = madvise, as on this VM), a first write into a fresh array can stall, "
        "and that, not parsing, is what separates the two after columns.",
        "",
        *lines(results),
        "",
    ]
    write("csvload", doc, {"meta": meta, "before": BEFORE, "runs": results})
    return 0 if all(r["same_encoding"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
