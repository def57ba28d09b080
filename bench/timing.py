"""Wall time per round: fedchain on the dev-net against Flower, at 5, 10, 20 and 50 peers.

fedchain: anvil (automine, and 1 s blocks) + three Kubo nodes in a private
swarm, one thread per peer with its own JSON-RPC connection and Kubo client,
training every round (`bench.overhead.run(train=True)`). Flower: its stock
FedAvg server and one gRPC client thread per company (`bench.flower`). Same
random stratified split of the bundled Bank Marketing data, same logreg model,
training code, local epoch and rounds. Reports the median round, the ratio
fedchain / Flower, and where a fedchain peer's time goes (train, evaluate, encode, IPFS
publish, chain transactions, fetch + verify, aggregate + score, adopt), and
where the machine's CPU goes (the peers' process, the Kubo nodes, anvil; Flower's process). Writes
bench/results/timing.md and timing.json.

    .venv/bin/python -m bench.timing [--peers 5 10 20 50] [--rounds 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

from bench.flower import companies_and_spec, run_flower
from bench.overhead import run
from bench.results_file import progress, stamp, table, write
from node.sim.companies import DemoConfig

PARTS = ["train", "evaluate", "encode", "publish", "chain", "fetch", "aggregate", "adopt"]
BLOCKS: tuple[float | None, ...] = (None, 1.0)
CORES = os.cpu_count() or 1


def flower_rounds(n_peers: int, rounds: int) -> dict[str, Any]:
    companies, nspec = companies_and_spec(DemoConfig(split_by=None, peers=n_peers, rounds=rounds))
    fl = run_flower(companies, nspec, rounds)
    seconds = [r["seconds"] for r in fl.rounds]
    return {
        "peers": n_peers,
        "round_seconds": seconds,
        "median_round_seconds": round(statistics.median(seconds), 3),
        "train_seconds": round(statistics.median(r["train_seconds"] for r in fl.rounds), 4),
        "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in fl.rounds), 3),
    }


def blocks_label(b: float | None) -> str:
    return "automine" if not b else f"{b:g} s blocks"


CPU_HEADER = ["peers", "system", "Python process", "Kubo nodes", "anvil", "all", "busy", "per peer"]


def cpu_rows(fed: list[dict[str, Any]], flower: list[dict[str, Any]], cores: int) -> list[list[str]]:
    """Where the machine's CPU went per round: fedchain with automine (its peers' process, the Kubo nodes,
    anvil), then Flower (its one process); `busy`: of the machine's `cores` over the round; all CPU / peers."""

    def row(peers: int, system: str, parts: list[str], total: float, seconds: float) -> list[str]:
        return [str(peers), system, *parts, f"{total:.2f}", f"{total / cores / seconds:.0%}", f"{total / peers:.3f}"]

    rows = []
    for r in fed:
        if not r["block_time"]:
            cpu = r["cpu_seconds_per_round"]
            parts = [f"{cpu[k]:.2f}" for k in ("peers", "kubo", "anvil")]
            rows.append(row(r["peers"], "fedchain", parts, sum(cpu.values()), r["median_round_seconds"]))
    for f in flower:
        total = f["cpu_seconds"]
        rows.append(row(f["peers"], "Flower", [f"{total:.2f}", "-", "-"], total, f["median_round_seconds"]))
    return rows


def report(
    fed: list[dict[str, Any]], flower: list[dict[str, Any]], rounds: int, meta: dict[str, str], poll: float
) -> list[str]:
    fl = {r["peers"]: r for r in flower}
    lines = [
        "# Time per round: fedchain (dev-net) vs Flower",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, "
        f"web3 {meta['web3']}, ipfshttpclient {meta['ipfshttpclient']}, flwr {meta['flwr']}, anvil {meta['anvil']}, "
        f"Kubo {meta['kubo']}. Produced by `make bench` (`python -m bench.timing`).",
        "",
        "Bundled Bank Marketing data split at random (stratified) into N companies; logreg, Adam, one local "
        f"epoch per round, {rounds} rounds; median over rounds (round 1 includes torch's first-call warm-up "
        "in both systems). Everything runs on this one machine: fedchain's peers are threads with their own "
        "RPC connection and Kubo client (3 Kubo nodes, anvil), Flower's clients are threads talking gRPC to "
        "its server. A fedchain round is two transactions per peer in overlapping rounds (a commit carrying "
        "the vote on the round before, a reveal whose first finalizes it: two blocks a round); Flower's is one "
        "fit request and reply per client. Contribution scores by peer evaluation (the default for new specs): "
        "each peer also evaluates the previous round's updates on its rows, and fetches that round's contents "
        "for the replay check. An idle peer waits for the next block (a block filter), or at most "
        f"{poll:g} s, as the daemon does.",
        "",
    ]
    rows = []
    for r in fed:
        f = fl[r["peers"]]
        rows.append(
            [
                str(r["peers"]),
                blocks_label(r["block_time"]),
                f"{r['median_round_seconds']:.2f}",
                f"{f['median_round_seconds']:.2f}",
                f"{r['median_round_seconds'] / f['median_round_seconds']:.1f}x",
                "yes" if all(s == "FINALIZED" for s in r["statuses"]) and r["agreed"] else "NO",
            ]
        )
    lines += table(
        ["peers", "fedchain chain", "fedchain s / round", "Flower s / round", "ratio", "all finalized, models agree"],
        rows,
    )
    lines += [
        "",
        "Where one fedchain peer's time goes per round (seconds, mean over peers; `waiting` is the rest of the "
        "round: waiting for the next block while the others train, commit and reveal), and Flower's split "
        "between client training and the rest (gRPC round trips, FedAvg):",
        "",
    ]
    rows = []
    for r in fed:
        b = r["breakdown"]
        busy = sum(b.get(k, 0.0) for k in PARTS)
        rows.append(
            [f"{r['peers']}", f"fedchain, {blocks_label(r['block_time'])}"]
            + [f"{b.get(k, 0.0):.3f}" for k in PARTS]
            + [f"{max(0.0, r['median_round_seconds'] - busy):.3f}"]
        )
    for f in flower:
        rest = max(0.0, f["median_round_seconds"] - f["train_seconds"])
        rows.append(
            [f"{f['peers']}", "Flower", f"{f['train_seconds']:.3f}"] + ["-"] * (len(PARTS) - 1) + [f"{rest:.3f}"]
        )
    lines += table(["peers", "system", *PARTS, "waiting / rest"], rows)
    lines += [
        "",
        "`chain` is the peer's own transactions (commit with its vote, reveal, and the last round's vote and "
        "finalize; with automine each waits for its block); `evaluate` rates the previous round's updates; "
        "`fetch` reads the Revealed events and pulls and checks every update from IPFS (most of it while the "
        "others still reveal); `aggregate` is the rule "
        "plus contribution scores; `adopt` pulls the finalized model.",
        "",
        f"Where the machine's {CORES} cores go per round (CPU seconds, median round; fedchain with automine). "
        "Every peer thread shares one Python process here, and its interpreter lock lets it run Python on about "
        "one core at a time (torch's kernels run outside it), so a round takes at least about that process's "
        "CPU; `busy` is all CPU / (cores x round seconds). Each peer fetches and evaluates every other peer's "
        "update, so the federation's CPU grows as peers squared while each peer's grows "
        "linearly: `per peer` (all CPU / peers) is roughly what one company's machine would spend on a round "
        "(with its own Kubo node and a share of the chain node's work; switching between this process's "
        "threads inflates it), not a round time.",
        "",
    ]
    lines += table(CPU_HEADER, cpu_rows(fed, flower, CORES))
    lines += [""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--poll", type=float, default=1.0, help="the longest a peer waits for a block after a step with nothing to do"
    )
    args = parser.parse_args()
    fed, flower = [], []
    total, i = len(args.peers) * (1 + len(BLOCKS)), 0
    for n in args.peers:
        i += 1
        progress("timing", f"Flower, {n} peers, {args.rounds} rounds ({i}/{total})")
        flower.append(flower_rounds(n, args.rounds))
        sys.stdout.write(f"{n} peers, Flower: {flower[-1]['round_seconds']}\n")
        for block_time in BLOCKS:
            i += 1
            progress("timing", f"fedchain, {n} peers, {blocks_label(block_time)}, {args.rounds} rounds ({i}/{total})")
            fed.append(run(n, args.rounds, block_time, args.poll, train=True))
            sys.stdout.write(f"{n} peers, fedchain {blocks_label(block_time)}: {fed[-1]['round_seconds']}\n")
    meta = stamp("torch", "web3", "ipfshttpclient", "flwr", tools=True)
    lines = report(fed, flower, args.rounds, meta, args.poll)
    write("timing", lines, {"meta": meta, "poll": args.poll, "cores": CORES, "fedchain": fed, "flower": flower})
    return 0


if __name__ == "__main__":
    sys.exit(main())
