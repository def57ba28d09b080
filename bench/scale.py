"""Scale: what a round's local work costs as the model and the federation grow.

Every honest peer runs, each round, the spec's aggregation rule over all the
round's updates, the contribution scores (pairwise agreement: O(n^2 d)), and
decodes each fetched update. This measures, on the integer arrays those
functions take (n updates of d fixed-point parameters):

- each rule (FedAvg, median, trimmed mean, Multi-Krum), the scores, and
  decode + encode of one update, for d = 10k, 100k, 1M, 10M at 10 peers, and
  for 5, 10, 20, 50 peers at d = 1M: wall time (best of the repeats) and peak
  memory allocated on top of the inputs (tracemalloc, which numpy reports to);
- IPFS: publish an encoded update of each size on one Kubo node and fetch it
  from another in the same private swarm (`KuboStore`, what peers use): MB/s.

Writes bench/results/scale.md and scale.json.

    .venv/bin/python -m bench.scale [--sizes 10000 100000 1000000 10000000] [--peers 5 10 20 50]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench.results_file import progress, stamp, table, write
from node.core import aggregate
from node.core.codec import IntArray, decode, encode, to_fixed
from node.core.rules import tolerance
from node.core.scoring import contribution_scores
from node.store import KuboStore
from node.store.kubo import new_swarm_key, start_kubo

TRIM = 0.2
SIZES = [10_000, 100_000, 1_000_000, 10_000_000]
PEERS = [5, 10, 20, 50]


def updates(n: int, d: int, seed: int = 0) -> IntArray:
    """n fixed-point updates of d parameters: a shared direction plus each peer's own noise."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.01, d)
    return np.stack([to_fixed(shared + rng.normal(0, 0.01, d)) for _ in range(n)])


def operations(n: int) -> dict[str, Callable[[IntArray], object]]:
    f = tolerance("multi-krum", n)
    return {
        "fedavg": aggregate.fedavg,
        "median": aggregate.median,
        "trimmed-mean": lambda u: aggregate.trimmed_mean(u, TRIM),
        f"multi-krum (f={f})": lambda u: aggregate.multi_krum(u, f),
        "scores": lambda u: contribution_scores(list(u)),
        "decode+encode (1 update)": lambda u: encode(decode(encode({"w": u[0]}), {"w": (u.shape[1],)})),
    }


def measure(fn: Callable[[IntArray], object], u: IntArray, repeats: int) -> tuple[float, int]:
    """Best wall time of `repeats` runs, and the peak bytes allocated by one run on top of its inputs."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn(u)
        best = min(best, time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn(u)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return best, peak


def aggregation(n: int, d: int) -> list[dict[str, Any]]:
    u = updates(n, d)
    repeats = 3 if n * d <= 50_000_000 else 1
    rows = []
    for name, fn in operations(n).items():
        secs, peak = measure(fn, u, repeats)
        rows.append({"op": name, "peers": n, "params": d, "seconds": round(secs, 5), "peak_bytes": peak})
        sys.stdout.write(f"{name:28} n={n:<3} d={d:<9} {secs:9.4f} s {peak / 2**20:9.1f} MiB\n")
    del u
    return rows


def ipfs_throughput(sizes: list[int], repeats: int = 3) -> list[dict[str, Any]]:
    """Publish on one Kubo node, fetch from another (private swarm), for updates of each size."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedchain-scale-") as tmp, ExitStack() as stack:
        key = new_swarm_key()
        a, b = (start_kubo(Path(tmp) / f"kubo-{i}", key) for i in range(2))
        stack.callback(a.stop)
        stack.callback(b.stop)
        b.connect(a)
        src, dst = KuboStore(a.api, timeout=300), KuboStore(b.api, timeout=300)
        for i, d in enumerate(sizes, 1):
            progress("scale", f"IPFS publish and fetch, {d:,} parameters ({i}/{len(sizes)})")
            puts, gets = [], []
            for rep in range(repeats if d < 10_000_000 else 1):
                data = encode({"w": updates(1, d, seed=1000 + rep)[0]})
                start = time.perf_counter()
                cid = src.put(data)
                puts.append(time.perf_counter() - start)
                start = time.perf_counter()
                got = dst.get(cid, len(data))
                gets.append(time.perf_counter() - start)
                if got != data:
                    raise RuntimeError(f"Kubo returned different bytes for {cid}")
            mb = len(data) / 1e6
            row = {
                "params": d,
                "bytes": len(data),
                "publish_seconds": round(statistics.median(puts), 4),
                "fetch_seconds": round(statistics.median(gets), 4),
                "publish_mb_s": round(mb / statistics.median(puts), 1),
                "fetch_mb_s": round(mb / statistics.median(gets), 1),
            }
            sys.stdout.write(f"IPFS d={d}: {row}\n")
            rows.append(row)
    return rows


def _mib(b: int) -> str:
    return f"{b / 2**20:,.1f}"


def report(agg: list[dict[str, Any]], ipfs: list[dict[str, Any]], meta: dict[str, str], at_size: int) -> list[str]:
    ops = list(dict.fromkeys(r["op"].split(" (f=")[0] for r in agg))

    def grid(key: str, fmt: Callable[[Any], str], axis: str, fixed: dict[str, int]) -> list[str]:
        points = sorted({r[axis] for r in agg if all(r[k] == v for k, v in fixed.items())})
        rows = []
        for p in points:
            at = {r["op"].split(" (f=")[0]: r for r in agg if r[axis] == p and all(r[k] == v for k, v in fixed.items())}
            other = fixed.get("peers") or fixed["params"]  # the input is n x d int64
            rows.append([f"{p:,}", _mib(8 * p * other)])
            rows[-1] += [fmt(at[o][key]) if o in at else "-" for o in ops]
        return table([axis, "input MiB", *ops], rows)

    sizes_at = {"peers": 10}
    peers_at = {"params": at_size}
    lines = [
        "# Scale: aggregation, scores and IPFS as the model and the federation grow",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, numpy {meta['numpy']}, "
        f"ipfshttpclient {meta['ipfshttpclient']}, Kubo {meta['kubo']}. Produced by `make bench` "
        "(`python -m bench.scale`).",
        "",
        "Integer updates (int64 fixed point) as every peer holds them after fetching a round. Multi-Krum "
        "withstands the most attackers n allows (f = (n - 3) / 2); trimmed mean drops 20% at each end. "
        "`scores` is the contribution scoring (pairwise agreement). Time is the best of 3 runs (1 run for "
        "inputs above 400 MB); memory is the peak allocated by one run on top of its input.",
        "",
        "## Seconds, 10 peers, by model size",
        "",
        *grid("seconds", lambda s: f"{s:.4f}", "params", sizes_at),
        "",
        "## Peak extra memory (MiB), 10 peers, by model size",
        "",
        *grid("peak_bytes", _mib, "params", sizes_at),
        "",
        f"## Seconds, {at_size:,} parameters, by peers",
        "",
        *grid("seconds", lambda s: f"{s:.4f}", "peers", peers_at),
        "",
        f"## Peak extra memory (MiB), {at_size:,} parameters, by peers",
        "",
        *grid("peak_bytes", _mib, "peers", peers_at),
        "",
        "## IPFS: publish on one Kubo node, fetch from another (private swarm, same machine)",
        "",
    ]
    lines += table(
        ["params", "update MB", "publish s", "fetch s", "publish MB/s", "fetch MB/s"],
        [
            [
                f"{r['params']:,}",
                f"{r['bytes'] / 1e6:.2f}",
                f"{r['publish_seconds']:.3f}",
                f"{r['fetch_seconds']:.3f}",
                f"{r['publish_mb_s']:.1f}",
                f"{r['fetch_mb_s']:.1f}",
            ]
            for r in ipfs
        ],
    )
    lines += [
        "",
        "Medians of 3 transfers (1 for 10M parameters), each of fresh content, through the Kubo RPC API "
        "(`ipfshttpclient`, CIDv1 raw leaves), fetch including the block exchange between the two nodes.",
        "",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--peers", type=int, nargs="+", default=PEERS)
    parser.add_argument("--at-size", type=int, default=1_000_000, help="model size for the peers sweep")
    args = parser.parse_args()
    points = [(10, d) for d in args.sizes]
    points += [(n, args.at_size) for n in args.peers if n != 10 or args.at_size not in args.sizes]
    agg = []
    for i, (n, d) in enumerate(points, 1):
        progress("scale", f"aggregation, {n} peers, {d:,} parameters ({i}/{len(points)})")
        agg += aggregation(n, d)
    ipfs = ipfs_throughput(args.sizes)
    meta = stamp("numpy", "ipfshttpclient", tools=True)
    write("scale", report(agg, ipfs, meta, args.at_size), {"meta": meta, "aggregation": agg, "ipfs": ipfs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
