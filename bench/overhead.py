"""Coordination overhead per round on a dev-net: everything but local training.

Starts anvil and three Kubo nodes in a private swarm, deploys a federation of
N peers (the bundled Bank Marketing data split at random), and runs each peer
in its own thread with its own RPC connection and IPFS client, stepping as the
daemon does (`Peer.step`, then a wait for the next block). Every peer trains once before
the clock starts and then submits that update (made unique per round), so a
round's wall time is pure coordination: adopt the last model, encode, publish
to IPFS, commit, reveal, fetch and verify every update, aggregate, score,
publish the model, vote, finalize. The training time it saves is measured too.

Anvil runs with automine (a block per transaction), 0.25 s blocks and 1 s
blocks. Writes bench/results/overhead.md and overhead.json.

    .venv/bin/python -m bench.overhead [--peers 5 10] [--rounds 5] [--poll 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account

from bench.results_file import process_cpu, progress, stamp, table, write
from ledger.chain import connect
from ledger.client import FederationClient
from ledger.deploy import deploy
from node.core.codec import IntArray
from node.events import StepEvent
from node.horizontal.peer import Peer
from node.horizontal.spec import NodeSpec, model_hash
from node.sim.companies import DemoConfig, load_companies
from node.sim.demo import demo_spec
from node.sim.devnet import start_parts
from node.store import KuboStore

WINDOW = 30
KUBO = 3


class TimedStore:
    """A store that adds up the time spent in put and get, per thread."""

    def __init__(self, inner: KuboStore, clock: dict[str, float]) -> None:
        self.inner, self.clock = inner, clock

    def put(self, data: bytes) -> str:
        t = time.perf_counter()
        try:
            return self.inner.put(data)
        finally:
            self.clock["ipfs_put"] += time.perf_counter() - t

    def get(self, cid: str, max_size: int, timeout: float | None = None) -> bytes:
        t = time.perf_counter()
        try:
            return self.inner.get(cid, max_size, timeout)
        finally:
            self.clock["ipfs_get"] += time.perf_counter() - t


def _kind(action: StepEvent) -> str:
    return action.kind if action.kind in ("committed", "revealed", "voted", "finalized", "advanced") else "other"


def run(n_peers: int, rounds: int, block_time: float | None, poll: float, train: bool = False) -> dict[str, Any]:
    """Run `rounds` rounds of `n_peers` peers on a fresh dev-net. With `train`, peers train every round
    (the whole round); without, they resubmit one update trained beforehand (coordination only)."""
    cfg = DemoConfig(split_by=None, peers=n_peers, rounds=rounds)
    schema, companies = load_companies(cfg)
    with tempfile.TemporaryDirectory(prefix="fedchain-overhead-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        anvil, kubo = start_parts(stack, root, min(KUBO, n_peers), block_time)
        chain = connect(anvil.url, anvil.chain_id)
        deployer, *accounts = [Account.create() for _ in range(n_peers + 1)]
        for a in (deployer, *accounts):
            chain.fund(a.address, 10**19)
        spec = demo_spec(cfg, schema, [a.address for a in accounts], n_peers)
        for window in ("commit_window", "reveal_window", "vote_window"):
            spec.data["chain"][window] = WINDOW
        deployment = deploy(chain, deployer, spec)
        nspec = NodeSpec.from_federation(spec)
        clocks: list[dict[str, float]] = []
        peers: list[Peer] = []
        train_secs: list[float] = []
        for i, (c, a) in enumerate(zip(companies, accounts, strict=True)):
            clock: dict[str, float] = defaultdict(float)
            fed = FederationClient(connect(anvil.url, anvil.chain_id), deployment.federation)
            store = TimedStore(KuboStore(kubo[i % len(kubo)].api), clock)
            peer = Peer(c.name, a, fed, store, c.train, nspec, from_block=deployment.block)
            if not train:
                t = time.perf_counter()
                update = peer.trained_update(0, nspec.initial_model())
                train_secs.append(time.perf_counter() - t)

                def submit(
                    p: Peer, r: int, base: dict[str, IntArray], u: dict[str, IntArray] = update
                ) -> dict[str, IntArray]:
                    first = next(iter(u))
                    fresh = {k: v.copy() for k, v in u.items()}
                    fresh[first].flat[0] += r  # a new update each round, not a replay
                    return fresh

                peer.make_update = submit
            fed.join(a)
            peers.append(peer)
            clocks.append(clock)
        fed = FederationClient(chain, deployment.federation)
        opened: dict[int, float] = {}
        cpu_at: dict[int, dict[str, float]] = {}  # CPU seconds spent so far, by part, when each round opened
        done = threading.Event()

        def cpu_now() -> dict[str, float]:
            return {
                "peers": process_cpu(),
                "kubo": sum(process_cpu(k.pid) for k in kubo),
                "anvil": process_cpu(anvil.pid),
            }

        closed = threading.Event()  # the last round has closed

        def watch() -> None:
            """Note when each round opens: read the chain again only when a block is added (the round
            moves with blocks only), so the clock costs the peers next to nothing."""
            seen = -1
            while not done.is_set():
                block = chain.block_number()
                if block != seen:
                    seen = block
                    r = fed.current_round()
                    if r not in opened:
                        opened[r], cpu_at[r] = time.perf_counter(), cpu_now()
                    if fed.round(rounds).phase.closed:
                        opened[rounds + 1], cpu_at[rounds + 1] = time.perf_counter(), cpu_now()
                        closed.set()
                        return
                time.sleep(0.01)

        def drive(peer: Peer, clock: dict[str, float]) -> None:
            peer.last_round = rounds
            while not done.is_set():
                if closed.is_set():
                    t = time.perf_counter()
                    peer.adopt_latest()
                    clock["adopt"] += time.perf_counter() - t
                    return
                t = time.perf_counter()
                action = peer.step()
                clock[_kind(action) if action else "idle_step"] += time.perf_counter() - t
                if not action:  # as the daemon waits: for the next block, or `poll` seconds
                    peer.fed.chain.wait_for_block(poll)

        threads = [threading.Thread(target=watch)]
        threads += [threading.Thread(target=drive, args=pc) for pc in zip(peers, clocks, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=rounds * (3 * WINDOW + 60))
        done.set()
        statuses = [fed.round(r).phase.name for r in range(1, rounds + 1)]
        hashes = {model_hash(p.params) for p in peers}  # every tensor, not the first
    measured = [r for r in range(1, rounds + 1) if r + 1 in opened]
    durations = [opened[r + 1] - opened[r] for r in measured]
    cpu = {
        part: round(statistics.median(cpu_at[r + 1][part] - cpu_at[r][part] for r in measured), 3) if measured else None
        for part in ("peers", "kubo", "anvil")
    }
    per_peer = {k: sum(c[k] for c in clocks) / n_peers / rounds for k in sorted({k for c in clocks for k in c})}
    parts = sorted({k for p in peers for k in p.timings})
    breakdown = {k: sum(p.timings.get(k, 0.0) for p in peers) / n_peers / rounds for k in parts}
    return {
        "peers": n_peers,
        "block_time": block_time or 0,
        "rounds": rounds,
        "statuses": statuses,
        "agreed": len(hashes) == 1,
        "round_seconds": [round(d, 3) for d in durations],
        "median_round_seconds": round(statistics.median(durations), 3) if durations else None,
        "cpu_seconds_per_round": cpu,  # median over rounds: the peers' process, the Kubo nodes, anvil
        "per_peer_round_seconds": {k: round(v, 4) for k, v in per_peer.items()},
        "breakdown": {k: round(v, 4) for k, v in breakdown.items()},
        "trained_each_round": train,
        "training_seconds_saved": round(float(np.mean(train_secs)), 3) if train_secs else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--poll", type=float, default=1.0, help="the longest a peer waits for a block after a step with nothing to do"
    )
    args = parser.parse_args()
    configs = [(n, block_time) for n in args.peers for block_time in (None, 0.25, 1.0)]
    runs = []
    for i, (n, block_time) in enumerate(configs, 1):
        blocks = f"{block_time:g} s blocks" if block_time else "automine"
        progress("overhead", f"{n} peers, {blocks}, {args.rounds} rounds ({i}/{len(configs)})")
        r = run(n, args.rounds, block_time, args.poll)
        sys.stdout.write(f"{n} peers, block time {block_time or 'automine'}: {r['round_seconds']}\n")
        runs.append(r)
    meta = stamp("web3", "ipfshttpclient", tools=True)
    keys = ["committed", "revealed", "voted", "finalized", "ipfs_put", "ipfs_get", "idle_step"]
    lines = [
        "# Coordination overhead per round (dev-net)",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, web3 {meta['web3']}, "
        f"ipfshttpclient {meta['ipfshttpclient']}, anvil {meta['anvil']}, Kubo {meta['kubo']}. "
        "Produced by `make bench` (`python -m bench.overhead`).",
        "",
        f"Each peer is a thread with its own JSON-RPC connection and Kubo client (3 Kubo nodes in a private "
        f"swarm), waiting for the next block (a block filter), or at most {args.poll:g} s, when it has nothing to do, "
        "as the daemon does. Peers submit an update trained once "
        f"beforehand, so the round time below is everything but local training. {args.rounds} rounds per row.",
        "",
    ]
    lines += table(
        [
            "peers",
            "blocks",
            "median s / round",
            "every round (s)",
            "all finalized, models agree",
            "training skipped (s / peer)",
        ],
        [
            [
                str(r["peers"]),
                str(r["block_time"] or "automine"),
                str(r["median_round_seconds"]),
                ", ".join(f"{d:.2f}" for d in r["round_seconds"]),
                "yes" if all(s == "FINALIZED" for s in r["statuses"]) and r["agreed"] else "NO",
                str(r["training_seconds_saved"]),
            ]
            for r in runs
        ],
    )
    lines += ["", "Where a peer's time goes, per round (seconds; steps include their IPFS and chain calls):", ""]
    lines += table(
        ["peers", "blocks", *keys],
        [
            [str(r["peers"]), str(r["block_time"] or "automine")]
            + [f"{r['per_peer_round_seconds'].get(k, 0):.3f}" for k in keys]
            for r in runs
        ],
    )
    lines += [
        "",
        "`idle_step` is time in steps that found nothing to do (reading the chain at a new block while waiting for "
        "others, and fetching what others revealed); "
        "`ipfs_put`/`ipfs_get` are parts of the commit, vote and adopt steps.",
        "",
    ]
    write("overhead", lines, {"meta": meta, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
