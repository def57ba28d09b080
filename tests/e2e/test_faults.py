"""Faults on the links between peers and their services, injected by toxiproxy on loopback.

Every peer of a three-daemon dev-net reaches anvil and its Kubo node through its
own proxies; latency with jitter sits on every link for the whole run, and one
peer's chain link hangs, then another peer's IPFS link resets its connections,
each for a few seconds mid-round. Rounds must finalize, every daemon must end
on the chain's model, and nobody commits twice.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ledger.devnet import AnvilProcess
from ledger.types import Phase
from node.sim.toxiproxy import Toxiproxy
from node.store.kubo import KuboNode
from tests.e2e.test_devnet import final_model, run_daemon, small_federation, wait_all, wait_until

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]

LATENCY_MS, JITTER_MS = 100, 20
OUTAGE = 6.0  # seconds a link hangs or resets


def test_rounds_finalize_over_slow_links_a_hung_chain_link_and_reset_ipfs_connections(
    tmp_path: Path,
    mining_anvil: AnvilProcess,
    kubo_nodes: list[KuboNode],
    sample_csv: Path,
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    with Toxiproxy.start(tmp_path / "toxiproxy.log") as toxi:
        anvil_at = mining_anvil.url.removeprefix("http://")

        def links(i: int) -> tuple[str, str]:
            chain = toxi.proxy(f"peer{i}-chain", anvil_at)
            ipfs = toxi.proxy(f"peer{i}-ipfs", f"127.0.0.1:{kubo_nodes[i].api_port}")
            host, port = ipfs.split(":")
            return f"http://{chain}", f"/ip4/{host}/tcp/{port}/http"

        net = small_federation(tmp_path, mining_anvil, kubo_nodes, sample_csv, links=links)
        for name in toxi.proxies:
            toxi.latency(name, LATENCY_MS, JITTER_MS)
        logs = [tmp_path / f"peer{i}.log" for i in range(3)]
        procs = [run_daemon(cfg, 2, 1, log) for cfg, log in zip(net.configs, logs, strict=True)]
        daemons += procs
        # peer 2's chain link hangs once it committed round 1 (its reveal is due), then comes back
        wait_until("peer 2's first commit", lambda: "committed round 1" in logs[2].read_text(), 180, logs[2])
        toxi.stall("peer2-chain")
        time.sleep(OUTAGE)
        toxi.clear("peer2-chain")
        toxi.latency("peer2-chain", LATENCY_MS, JITTER_MS)
        # peer 1's IPFS connections are reset while round 1's updates are fetched and its model published
        wait_until("round 1's vote", lambda: net.fed.phase(1) in (Phase.VOTE, Phase.FINALIZED), 180, logs[1])
        toxi.reset("peer1-ipfs")
        time.sleep(OUTAGE)
        toxi.clear("peer1-ipfs")
        toxi.latency("peer1-ipfs", LATENCY_MS, JITTER_MS)
        wait_all(procs, 400)
    assert [p.returncode for p in procs] == [0, 0, 0], [log.read_text()[-1500:] for log in logs]
    text = "".join(log.read_text() for log in logs)
    assert "AlreadyCommitted" not in text and "Traceback" not in text
    # peer 1's own IPFS link failing is an outage it waits out, not a sender's update to reject
    # (it used to reject it as unavailable and vote for another model)
    assert "rejected" not in text and "RPC/IPFS answer again" in logs[1].read_text()
    for r in (1, 2):
        info = net.fed.round(r)
        assert info.phase == Phase.FINALIZED, (r, info)
    # every daemon ends on round 2's model, the one on chain
    assert {final_model(log) for log in logs} == {net.fed.round(2).model_hash.hex()[:16]}
