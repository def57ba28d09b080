"""Honest peers compute bit-identical aggregates: separate processes, different thread counts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np

SCRIPT = """
import hashlib, sys
import numpy as np
from node.core.aggregate import fedavg, median, multi_krum, trimmed_mean
rng = np.random.default_rng(7)
u = rng.integers(-(2**31) + 1, 2**31, size=(11, 50_000), dtype=np.int64)
u[:3] >>= 8  # a mix of scales, as real deltas have
weights = [int(w) for w in rng.integers(1, 10_000, size=11)]
out = [fedavg(u, weights), median(u), trimmed_mean(u, 0.2), multi_krum(u, f=3, m=5)]
print(hashlib.sha256(b"".join(o.astype("<i8").tobytes() for o in out)).hexdigest())
"""


def _run(threads: int) -> str:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONHASHSEED": str(threads),
    }
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_aggregates_are_identical_across_processes_and_thread_counts() -> None:
    hashes = {threads: _run(threads) for threads in (1, 2, 4)}
    assert len(set(hashes.values())) == 1, hashes
    assert len(next(iter(hashes.values()))) == 64


def test_aggregation_is_pure() -> None:
    from node.core.aggregate import fedavg, median

    u = np.arange(12, dtype=np.int64).reshape(3, 4)
    before = hashlib.sha256(u.tobytes()).digest()
    fedavg(u)
    median(u)
    assert hashlib.sha256(u.tobytes()).digest() == before
