"""Faults survived: rounds over bad links, partitions, crashes and restarts, each against a clean run.

Two tables.

Links (`fedchain demo --devnet`, every daemon's chain and IPFS links through
its own toxiproxy proxies): clean; 100 ms ± 20 ms latency each way on every
link; the same at 1 MB/s. Seconds per round (round 1, which includes joining,
apart), rounds finalized, and whether every run agreed on every round's model.

Faults (node/sim/faults.py: one `fedchain node run` process per peer, anvil
mining a block a second, a Kubo node per peer), one run per row:
- clean, with every peer and the chain node in its own network namespace;
- one peer partitioned from everyone (its link to the bridge down) as soon as
  a round's commit phase opens, once it enters its reveal, once it enters its
  vote; healed when that round has closed;
- every round, one peer's chain link hung and another's IPFS connections reset
  for a few seconds each (toxiproxy);
- a third of the peers SIGKILLed at random moments, each restarted a few
  seconds later, over every round;
- a peer's Kubo node restarted mid-round; a peer's Kubo node wiped (its repo
  made anew) mid-round;
- the chain node stopped (saving its chain) and restarted.
For each: rounds attempted, finalized, failed (the chain's reason), the time
from each fault's end to the next finalized round, and whether nothing was
lost: clean exits, no double commit, every daemon on the chain's model, tokens
conserved, slashing exactly where the protocol says, every finalized round
re-verified as `fedchain audit verify` does.

Writes bench/results/faults.md and faults.json.

    .venv/bin/python -m bench.faults [--peers 4] [--rounds 4] [--fault-rounds 5] [--only links|faults]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.results_file import progress, stamp, table, write
from ledger.types import Phase
from node.sim.cluster import write_sample
from node.sim.companies import DemoConfig
from node.sim.devnet import run_devnet_demo
from node.sim.faults import FaultNet, nothing_lost
from node.sim.toxiproxy import Toxiproxy

LATENCY_MS, JITTER_MS, RATE_KB = 100, 20, 1024


def _clean(_toxi: Toxiproxy, _name: str) -> None:
    return None


def _slow(toxi: Toxiproxy, name: str) -> None:
    toxi.latency(name, LATENCY_MS, JITTER_MS)


def _slow_and_narrow(toxi: Toxiproxy, name: str) -> None:
    toxi.latency(name, LATENCY_MS, JITTER_MS)
    toxi.bandwidth(name, RATE_KB)


NETWORKS: dict[str, Callable[[Toxiproxy, str], None]] = {
    "clean (through the proxies)": _clean,
    f"{LATENCY_MS} ms ± {JITTER_MS} ms each way": _slow,
    f"{LATENCY_MS} ms ± {JITTER_MS} ms, {RATE_KB // 1024} MB/s": _slow_and_narrow,
}


def run_links(cfg: DemoConfig, shape: Callable[[Toxiproxy, str], None], log: Path) -> dict[str, Any]:
    """The dev-net demo with every link through toxiproxy, shaped by `shape` from the start."""
    with Toxiproxy.start(log) as toxi:

        def links(i: int, rpc: str, ipfs: str) -> tuple[str, str]:
            proxied = toxi.peer_links(i, rpc, ipfs)
            for name in (f"peer{i}-chain", f"peer{i}-ipfs"):
                shape(toxi, name)
            return proxied

        doc = run_devnet_demo(cfg, links=links)
    rounds = doc["rounds"]
    return {
        "seconds": [r["seconds"] for r in rounds],
        "finalized": sum(r["status"] == "finalized" for r in rounds),
        "models": [r["model_hash"] for r in rounds],
        "federated_auc": doc["federated_auc"],
    }


def link_lines(runs: dict[str, dict[str, Any]], rounds: int) -> list[str]:
    """The results table (here and in BENCHMARKS.md); the first network is the clean one."""
    clean = next(iter(runs.values()))
    base = statistics.median(clean["seconds"][1:] or clean["seconds"])
    rows = []
    for name, r in runs.items():
        later = statistics.median(r["seconds"][1:] or r["seconds"])
        rows.append(
            [
                name,
                f"{r['finalized']}/{rounds}",
                f"{r['seconds'][0]:.1f}",
                f"{later:.1f}",
                f"{later / base:.2f}x",
                "yes" if r["models"] == clean["models"] else "NO",
            ]
        )
    return table(["network", "finalized", "round 1 s", "later rounds s", "against clean", "same models as clean"], rows)


WINDOW = 15  # seconds per phase window in the fault runs
OUTAGE = 6.0  # seconds a link hangs or resets, or a killed daemon stays down at most


def _clean_run(_run: FaultNet, _toxi: Toxiproxy | None, _rng: random.Random) -> None:
    return None


def _partition_in(phase: Phase, peer: int) -> Callable[[FaultNet, Toxiproxy | None, random.Random], None]:
    def inject(run: FaultNet, _toxi: Toxiproxy | None, _rng: random.Random) -> None:
        r = 2
        run.wait_until(f"round {r} in its {phase.name.lower()}", lambda: run.fed.phase(r) == phase)
        with run.fault(f"peer{peer} partitioned in round {r}'s {phase.name.lower()}"):
            run.partition(peer)
            run.wait_closed(r, 4 * WINDOW + 60)
            run.heal(peer)

    return inject


def _hung_and_reset(run: FaultNet, toxi: Toxiproxy | None, rng: random.Random) -> None:
    """Every round: one peer's chain link hangs, another's IPFS connections reset, OUTAGE seconds each."""
    assert toxi is not None
    n = len(run.procs)
    for r in range(1, run.rounds):

        def past_commit(k: int = r) -> bool:  # not before round 1 opens: a daemon starting up fails fast
            return run.fed.phase(k) in (Phase.REVEAL, Phase.VOTE, Phase.FINALIZED, Phase.FAILED)

        run.wait_until(f"round {r} past its commit", past_commit, 4 * WINDOW + 60)
        hung, reset = rng.sample(range(n), 2)
        with run.fault(f"round {r}: peer{hung}'s chain link hung, peer{reset}'s IPFS connections reset"):
            toxi.stall(f"peer{hung}-chain")
            toxi.reset(f"peer{reset}-ipfs")
            time.sleep(OUTAGE)
            toxi.clear(f"peer{hung}-chain")
            toxi.clear(f"peer{reset}-ipfs")


def _kill_a_third(run: FaultNet, _toxi: Toxiproxy | None, rng: random.Random) -> None:
    """A third of the peers SIGKILLed at random moments while rounds run, each back after 1 to OUTAGE s."""
    n = len(run.procs)
    while not run.closed.get(run.rounds - 1):
        time.sleep(rng.uniform(2, 10))
        victims = rng.sample(range(n), max(1, n // 3))
        with run.fault(f"peers {victims} killed"):
            for i in victims:
                run.kill(i)
            time.sleep(rng.uniform(1, OUTAGE))
            for i in victims:
                run.restart(i)


def _restart_kubo(wipe: bool) -> Callable[[FaultNet, Toxiproxy | None, random.Random], None]:
    def inject(run: FaultNet, _toxi: Toxiproxy | None, _rng: random.Random) -> None:
        r = 2
        run.wait_until(f"round {r} in its reveal", lambda: run.fed.phase(r) == Phase.REVEAL)
        with run.fault(f"peer1's Kubo node {'wiped' if wipe else 'restarted'} in round {r}'s reveal"):
            run.restart_kubo(1, wipe=wipe)

    return inject


def _restart_chain(run: FaultNet, _toxi: Toxiproxy | None, _rng: random.Random) -> None:
    r = 2
    run.wait_until(f"round {r} in its reveal", lambda: run.fed.phase(r) == Phase.REVEAL)
    with run.fault(f"the chain node stopped in round {r}'s reveal, back {OUTAGE:.0f} s later"):
        run.restart_chain(down=OUTAGE)


Inject = Callable[[FaultNet, Toxiproxy | None, random.Random], None]
# name -> (peers, in network namespaces, links through toxiproxy, rounds as a multiple of --fault-rounds, the faults)
FAULTS: dict[str, tuple[int, bool, bool, int, Inject]] = {
    "none (namespaces)": (4, True, False, 1, _clean_run),
    "partitioned in the commit phase": (4, True, False, 1, _partition_in(Phase.COMMIT, 0)),
    "partitioned in the reveal phase": (4, True, False, 1, _partition_in(Phase.REVEAL, 1)),
    "partitioned in the vote phase": (4, True, False, 1, _partition_in(Phase.VOTE, 2)),
    f"chain link hung, IPFS reset ({OUTAGE:.0f} s, every round)": (4, False, True, 2, _hung_and_reset),
    "a third SIGKILLed at random, restarted": (6, False, False, 2, _kill_a_third),
    "a Kubo node restarted": (4, False, False, 1, _restart_kubo(False)),
    "a Kubo node wiped": (4, False, False, 1, _restart_kubo(True)),
    "the chain node restarted": (4, False, False, 1, _restart_chain),
}


def run_faults(name: str, rounds: int, root: Path, csv: Path, seed: int) -> dict[str, Any]:
    """One fault run: the dev-net, the faults injected (in a thread, while the daemons run), the report."""
    peers, netns, proxied, times, inject = FAULTS[name]
    rounds *= times
    rng = random.Random(seed)
    with Toxiproxy.start(root / "toxiproxy.log") as toxi:
        links = toxi.peer_links if proxied else None
        with FaultNet.start(root, csv, peers, rounds, netns, WINDOW, links) as run:
            errors: list[BaseException] = []

            def go() -> None:
                try:
                    inject(run, toxi, rng)
                except BaseException as exc:  # reported below, with the run's own report
                    errors.append(exc)

            worker = threading.Thread(target=go, name="faults", daemon=True)
            worker.start()
            run.wait_done(rounds * (4 * WINDOW + 60))
            worker.join(4 * WINDOW + 120)  # a daemon it restarted at the end may still be running
            codes = run.wait_done(4 * WINDOW + 120)
            report = run.report()
    return {
        **report,
        "peers": peers,
        "exit_codes": codes,
        "faults": [f.what for f in run.faults],
        "injection_error": str(errors[0]).splitlines()[0] if errors else None,
        "nothing_lost": nothing_lost(report) and not errors,
    }


def fault_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The fault table (here and in BENCHMARKS.md)."""
    rows = []
    for name, r in runs.items():
        failed = ", ".join(f"{k}: {why}" for k, why in r["failed"].items()) or "none"
        rec = [x for x in r["recovery_seconds"] if x is not None]
        recovery = f"{max(rec):.1f}" if rec else ("never" if r["recovery_seconds"] else "")
        lost = "yes" if r["nothing_lost"] else "NO: " + _what_was_lost(r)
        closed = [float(t) for t in r["closed_at"].values()]  # rounds after the first (setup, joining)
        per_round = (closed[-1] - closed[0]) / (len(closed) - 1) if len(closed) > 1 else float("nan")
        rows.append(
            [
                name,
                str(r["peers"]),
                str(r["attempted"]),
                str(r["finalized"]),
                failed,
                recovery,
                f"{per_round:.1f}",
                f"{closed[-1]:.0f}" if closed else "",
                lost,
            ]
        )
    header = [
        "fault",
        "peers",
        "rounds",
        "finalized",
        "failed (why)",
        "recovery s",
        "s/round (2 on)",
        "last closed at s",
        "nothing lost",
    ]
    return table(header, rows)


def _what_was_lost(r: dict[str, Any]) -> str:
    said = []
    if any(c != 0 for c in r["exit_codes"]):
        said.append(f"exit codes {r['exit_codes']}")
    for key, text in (
        ("double_commits", "double commits"),
        ("unverified", "rounds not re-verified"),
        ("injection_error", "fault injection failed"),
    ):
        if r[key]:
            said.append(f"{text} {r[key]}")
    for key, text in (
        ("same_model", "daemons on different models"),
        ("tokens_conserved", "tokens not conserved"),
        ("slashed_as_protocol", "slashing off protocol"),
    ):
        if not r[key]:
            said.append(text)
    if r["tracebacks"]:
        said.append(f"{r['tracebacks']} tracebacks")
    return "; ".join(said)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=4, help="companies in the links table, one daemon each")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per run in the links table")
    ap.add_argument("--fault-rounds", type=int, default=5, help="rounds per run in the faults table")
    ap.add_argument("--only", choices=("links", "faults"), help="one table only (the other is kept from the last run)")
    ap.add_argument(
        "--rows", nargs="+", help="only the fault rows whose names hold one of these texts (the others kept)"
    )
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: every daemon and node is stopped too
    cfg = DemoConfig(split_by=None, peers=args.peers, rounds=args.rounds, seed=0)
    previous = _previous()
    runs: dict[str, dict[str, Any]] = previous.get("runs", {}) if args.only == "faults" else {}
    keep = args.only == "links" or args.rows is not None
    faults: dict[str, dict[str, Any]] = previous.get("faults", {}) if keep else {}
    with tempfile.TemporaryDirectory(prefix="fedchain-faults-") as tmp:
        if args.only != "faults":
            for i, (name, shape) in enumerate(NETWORKS.items(), 1):
                progress("faults", f"{name}: {args.peers} daemons, {args.rounds} rounds ({i}/{len(NETWORKS)})")
                runs[name] = run_links(cfg, shape, Path(tmp) / f"toxiproxy-{i}.log")
        if args.only != "links":
            csv = write_sample(Path(tmp) / "sample.csv")
            for i, name in enumerate(FAULTS, 1):
                if args.rows is not None and not any(text in name for text in args.rows):
                    continue
                progress(
                    "faults", f"fault run: {name}, {args.fault_rounds * FAULTS[name][3]} rounds ({i}/{len(FAULTS)})"
                )
                (Path(tmp) / f"run{i}").mkdir()
                faults[name] = run_faults(name, args.fault_rounds, Path(tmp) / f"run{i}", csv, seed=i)
    faults = {name: faults[name] for name in FAULTS if name in faults}  # the table's order; old names dropped
    meta = stamp("web3", tools=True)
    doc = [
        "# Faults survived",
        "",
        f"Measured {meta['date']} on {meta['machine']}; python {meta['python']}, anvil {meta['anvil']}, "
        f"kubo {meta['kubo']}, toxiproxy {meta.get('toxiproxy', '?')}. `python -m bench.faults`.",
        "",
        "## Rounds over bad links (toxiproxy)",
        "",
        f"`fedchain demo --devnet` ({args.peers} companies, a `fedchain node run` process each, anvil mining a "
        f"block a second, {args.rounds} rounds), every daemon's chain and IPFS links through its own toxiproxy "
        "proxies. Round 1 includes joining; later rounds: the median.",
        "",
        *link_lines(runs, args.rounds),
        "",
        "## Partitions, crashes and restarts",
        "",
        f"node/sim/faults.py: a `fedchain node run` process and a Kubo node per peer, anvil mining a block a "
        f"second, {WINDOW} s windows, {args.fault_rounds} rounds a run, one run per row (docstring of "
        "bench/faults.py). *Recovery*: the longest time from a fault's end to the next finalized round. "
        "*s/round (2 on)*: from round 1's close to the last one's; *last closed at*: from the run's start (chain, "
        "Kubo nodes, deployment, daemons joining). "
        "*Nothing lost*: every daemon exited cleanly on the chain's last model, nobody committed twice, tokens "
        "are conserved, exactly the committers that never revealed and the revealers that never voted were "
        "slashed, and every finalized round re-verifies (`audit verify`).",
        "",
        *fault_lines(faults),
        "",
        "Not measured yet (issue 18): 50 peers on one machine against Flower.",
        "",
    ]
    write("faults", doc, {"meta": meta, "peers": args.peers, "rounds": args.rounds, "runs": runs, "faults": faults})
    clean = next(iter(runs.values()))["models"] if runs else []
    links_ok = all(r["finalized"] == args.rounds and r["models"] == clean for r in runs.values())
    return 0 if links_ok and all(f["nothing_lost"] for f in faults.values()) else 1


def _previous() -> dict[str, Any]:
    from bench.results_file import RESULTS

    try:
        data: dict[str, Any] = json.loads((RESULTS / "faults.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


if __name__ == "__main__":
    sys.exit(main())
