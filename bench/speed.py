"""The main job's speed: `fedchain demo` with its defaults, and a round's time as rounds go by.

Side by side in one run: the demo's default chain (eth-tester, in process) and
anvil (started here, stopped at the end), same peers in process, same data split,
same seeds, at 10 and 30 rounds. Reports the wall time of the `fedchain demo`
command (defaults: 12 companies, 10 rounds, embedded chain, a fresh process, so
imports and evaluation included), the seconds per round early and late in a
30-round run (a round must not grow with the chain's length), JSON-RPC requests
per round per peer, and whether every round's model hash is the same on both
chains and in both runs. Writes bench/results/speed.md and speed.json.

    .venv/bin/python -m bench.speed [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results_file import progress, stamp, table, write
from ledger.chain import Chain, connect, embedded_chain
from ledger.devnet import start_anvil
from node.sim.companies import DemoConfig
from node.sim.demo import run_demo

TARGET_SECONDS = 30.0  # issue 19: the demo with its defaults


def demo_command_seconds() -> float:
    """Wall time of `fedchain demo` with its defaults, in a fresh process."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "node.cli", "demo"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench: fedchain demo failed: {out.stderr[-1000:]}")
    return round(time.monotonic() - started, 2)


def one_run(chain: Chain, rounds: int) -> dict[str, Any]:
    started = time.monotonic()
    doc = run_demo(DemoConfig(rounds=rounds), chain=chain)
    peers = len(doc["peers"])
    rows = doc["rounds"]
    return {
        "rounds": rounds,
        "seconds": round(time.monotonic() - started, 2),
        "round_seconds": [r["seconds"] for r in rows],
        "requests_per_round_per_peer": [round(r["chain_requests"] / peers, 1) for r in rows],
        "model_hashes": [r["model_hash"] for r in rows],
        "peers": peers,
    }


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summary(run: dict[str, Any]) -> dict[str, float]:
    """Round 1 apart (it includes torch's first-call warm-up): the early and the late rounds."""
    secs, reqs = run["round_seconds"], run["requests_per_round_per_peer"]
    early, late = secs[1:10], secs[-9:]
    return {
        "round_1": secs[0],
        "early_median": _median(early),
        "late_median": _median(late),
        "late_over_early": round(statistics.median(late) / statistics.median(early), 3),
        "requests_early": _median(reqs[1:10]),
        "requests_late": _median(reqs[-9:]),
    }


def report(doc: dict[str, Any]) -> list[str]:
    meta, runs = doc["meta"], doc["runs"]
    rows = []
    for name in ("embedded", "anvil"):
        for run in runs[name]:
            s = summary(run) if run["rounds"] > 10 else None
            rows.append(
                [
                    name,
                    str(run["rounds"]),
                    f"{run['seconds']:.1f}",
                    f"{run['round_seconds'][0]:.2f}",
                    f"{_median(run['round_seconds'][1:]):.2f}",
                    f"{s['late_over_early']:.2f}" if s else "-",
                    f"{_median(run['requests_per_round_per_peer'][1:]):.0f}",
                ]
            )
    e30, a30 = (summary(runs[n][-1]) for n in ("embedded", "anvil"))
    return [
        "# Speed of the main job",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, web3 {meta['web3']}, "
        f"eth-tester {meta['eth-tester']}, py-evm {meta['py-evm']}, anvil {meta['anvil']}. "
        "Produced by `make bench` (`python -m bench.speed`).",
        "",
        f"`fedchain demo` with its defaults (12 companies, 10 rounds, the embedded chain, a fresh process): "
        f"**{doc['demo_command_seconds']:.1f} s** (target: under {TARGET_SECONDS:.0f} s).",
        "",
        "The same demo with its peers in this process, on the embedded chain and on anvil (automine), "
        "side by side; a round's seconds are the median of rounds 2 on (round 1 includes torch's warm-up); "
        "late / early compares rounds 22-30 with rounds 2-10 of the 30-round run; requests are JSON-RPC "
        "requests of all peers in a round divided by the peers (the embedded chain's counted as a node's "
        "would be).",
        "",
        *table(
            ["chain", "rounds", "run (s)", "round 1 (s)", "a round (s)", "late / early", "requests / round / peer"],
            rows,
        ),
        "",
        f"Every round's model hash is the same on both chains and in the 10- and 30-round runs: "
        f"**{'yes' if doc['hashes_identical'] else 'NO'}**. "
        f"Late rounds take {e30['late_over_early']:.2f}x the early ones on the embedded chain and "
        f"{a30['late_over_early']:.2f}x on anvil.",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="the long run's rounds (at least 20)")
    args = parser.parse_args(argv)
    if args.rounds < 20:
        parser.error("--rounds must be at least 20 (early and late rounds are compared)")
    progress("speed", "fedchain demo with its defaults, in a fresh process (1/5)")
    command = demo_command_seconds()
    runs: dict[str, list[dict[str, Any]]] = {"embedded": [], "anvil": []}
    for i, rounds in enumerate((10, args.rounds)):
        progress("speed", f"embedded chain, {rounds} rounds ({2 + 2 * i}/5)")
        runs["embedded"].append(one_run(embedded_chain(), rounds))
        with tempfile.TemporaryDirectory(prefix="fedchain-speed-") as tmp:
            progress("speed", f"anvil, {rounds} rounds ({3 + 2 * i}/5)")
            anvil = start_anvil(log_path=Path(tmp) / "anvil.log")
            try:
                runs["anvil"].append(one_run(connect(anvil.url, anvil.chain_id), rounds))
            finally:
                anvil.stop()
    hashes = [run["model_hashes"] for name in runs for run in runs[name]]
    identical = all(h == hashes[-1][: len(h)] for h in hashes)
    doc = {
        "meta": stamp("web3", "eth-tester", "py-evm", tools=True),
        "demo_command_seconds": command,
        "target_seconds": TARGET_SECONDS,
        "runs": runs,
        "summary": {name: summary(runs[name][-1]) for name in runs},
        "hashes_identical": identical,
    }
    write("speed", report(doc), doc)


if __name__ == "__main__":
    main()
