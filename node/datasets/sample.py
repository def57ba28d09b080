"""`python -m node.datasets.sample [--out-dir D]`: the README walk-through's CSV files from the bundled data.

`sample.csv` is every seventh row (the file is sorted by date, so no head of it
will do), for `fedchain spec init`; `bank.csv` and `hotel.csv` share out the
other rows alternately, as two companies' private files. Existing files are
never overwritten.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Sequence
from pathlib import Path

from node.datasets import DEFAULT_DATA

__all__ = ["main", "walkthrough_files"]


def walkthrough_files() -> dict[str, list[str]]:
    """File name -> its lines (header first)."""
    with gzip.open(DEFAULT_DATA, "rt", encoding="utf-8") as fh:
        header, *rows = fh.read().splitlines()
    sample = rows[6::7]
    rest = [r for i, r in enumerate(rows) if i % 7 != 6]
    label = header.split(",").index("y")

    def prospect(row: str) -> str:
        return ",".join(c for j, c in enumerate(row.split(",")) if j != label)

    prospects = ["customer_id," + prospect(header)] + [f"P{i:05d},{prospect(r)}" for i, r in enumerate(sample, 1)]
    return {
        "sample.csv": [header, *sample],
        "bank.csv": [header, *rest[0::2]],
        "hotel.csv": [header, *rest[1::2]],
        "prospects.csv": prospects,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.datasets.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("."), help="where to write them (default: here)")
    args = parser.parse_args(argv)
    files = walkthrough_files()
    there = [name for name in files if (args.out_dir / name).exists()]
    if there:
        sys.stderr.write(f"error: {', '.join(there)} already in {args.out_dir}; refusing to overwrite\n")
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (args.out_dir / name).write_text("\n".join(lines) + "\n")
        sys.stdout.write(f"wrote {args.out_dir / name} ({len(lines) - 1} rows)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
