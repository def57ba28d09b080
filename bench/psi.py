"""PSI throughput: the ECDH-PSI and alignment of `node/vertical/psi.py` on synthetic ids.

An owner and one feature party with N ids each, half of them shared, run the
whole exchange in one process (`align_in_memory`: hash to the group, blind,
re-blind the other's set (libsodium refusing any point outside the group),
match, hand out sample ids), each party's work on a thread per core. Reports
CPU seconds (over every thread), ids per second per core ((N + N) / CPU
seconds: each party's own and the other's work counted once, as SecretFlow
reports its ECDH-PSI), wall seconds, bytes exchanged and peak memory. Writes bench/results/psi.md and
psi.json. The target (issue 15): at least 3.5k ids per second per core.

    .venv/bin/python -m bench.psi [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

from bench.results_file import progress, stamp, table, write
from node.vertical.psi import align_in_memory, task_tag

TARGET = 3500  # ids per second per core


def run(n: int) -> dict[str, Any]:
    owner = [f"owner-only-{i}" for i in range(n // 2)] + [f"shared-{i}" for i in range(n - n // 2)]
    party = [f"party-only-{i}" for i in range(n // 2)] + [f"shared-{i}" for i in range(n - n // 2)]
    cpu, wall = time.process_time(), time.perf_counter()
    aligned, inbox = align_in_memory(owner, {"party": party}, task_tag(1, "0x" + "00" * 20, 1))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert len(aligned["owner"].rows) == n - n // 2
    return {
        "ids_per_party": n,
        "intersection": len(aligned["owner"].rows),
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
        "ids_per_second_per_core": round(2 * n / cpu),
        "bytes_exchanged": sum(len(m) for box in inbox.values() for m in box),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    runs = []
    for i, n in enumerate(sizes, 1):
        progress("psi", f"{n:,} ids per party ({i}/{len(sizes)})")
        runs.append(run(n))
        sys.stdout.write(f"{n} x {n}: {runs[-1]}\n")
    meta = stamp("pynacl")
    lines = [
        "# PSI throughput",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, PyNaCl {meta['pynacl']} "
        "(libsodium's edwards25519 group). Produced by `make bench` (`python -m bench.psi`).",
        "",
        "ECDH-PSI of an owner and one feature party, N ids each, half shared, every message passed in one "
        "process, each party's work on a thread per core (`node.vertical.psi.align_in_memory`). Ids per second "
        f"per core = 2N / CPU seconds over every thread; target at least {TARGET}. Peak memory is the process's "
        "(ids, points and Python objects).",
        "",
    ]
    lines += table(
        [
            "ids per party",
            "intersection",
            "CPU s",
            "wall s",
            "ids / s / core",
            "target met",
            "bytes exchanged",
            "peak MB",
        ],
        [
            [
                f"{r['ids_per_party']:,}",
                f"{r['intersection']:,}",
                f"{r['cpu_seconds']:.1f}",
                f"{r['wall_seconds']:.1f}",
                f"{r['ids_per_second_per_core']:,}",
                "yes" if r["ids_per_second_per_core"] >= TARGET else "NO",
                f"{r['bytes_exchanged']:,}",
                str(r["peak_rss_mb"]),
            ]
            for r in runs
        ],
    )
    lines += [""]
    write("psi", lines, {"meta": meta, "target": TARGET, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
