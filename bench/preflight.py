"""Stop before any benchmark runs if a part it needs is missing, and say how to get it.

.venv/bin/python -m bench.preflight
"""

from __future__ import annotations

import importlib.util
import sys

from ledger.toolchain import tools
from node.datasets import ADULT_DATA, DEFAULT_DATA

EXTRA = "run `make setup`, which installs the `bench` extra"


def missing() -> list[str]:
    """One line per missing part: what it is and how to get it."""
    out = [f"{t.name}: not found or broken at {t.path} ({t.fix})" for t in tools() if not t.ok]
    out += [
        f"python package {m}: not installed ({EXTRA})"
        for m in ("flwr", "matplotlib")
        if not importlib.util.find_spec(m)
    ]
    out += [
        f"the bundled data set {d} is missing (a broken checkout?)"
        for d in (DEFAULT_DATA, ADULT_DATA)
        if not d.exists()
    ]
    return out


def main() -> int:
    problems = missing()
    for line in problems:
        sys.stderr.write(f"bench: {line}\n")
    if problems:
        sys.stderr.write("bench: not running the benchmarks with parts missing\n")
        return 1
    sys.stdout.write(
        "bench: " + ", ".join(f"{t.name} {t.version}" for t in tools()) + "; flwr and matplotlib present\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
