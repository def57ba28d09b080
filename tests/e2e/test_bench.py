"""The benchmarks' own machinery works (their figures are measured by `make bench`, never asserted here)."""

from __future__ import annotations

from bench.overhead import run


def test_the_overhead_bench_runs_peers_in_threads_on_a_devnet() -> None:
    result = run(n_peers=3, rounds=2, block_time=None, poll=0.05)
    assert result["statuses"] == ["FINALIZED", "FINALIZED"]
    assert result["agreed"]
    assert len(result["round_seconds"]) == 2
    steps = result["per_peer_round_seconds"]
    assert {"committed", "revealed", "voted", "ipfs_put", "ipfs_get"} <= set(steps)
