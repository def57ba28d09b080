"""`fedchain devnet up` brings back what stopped, keeps the chain, and never loses track of a process.

Issue 12: a stopped Kubo node could not be brought back (an old run's "Daemon is
ready" satisfied the wait, a node's index collided with a live one's repo) and each
try left an `ipfs daemon` that `devnet down` no longer knew; a restarted anvil came
back empty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ledger.chain import connect
from ledger.client import FederationClient
from ledger.devnet import free_port, pid_alive, stop_pid
from tests.harness import Harness, run_cli

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]


def _devnet(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    out = run_cli("devnet", *args, "--state-dir", str(state), timeout=180)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def _recorded(state: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((state / "state.json").read_text())
    return doc


def _ipfs_daemons(repo_root: Path) -> list[int]:
    """Every running `ipfs daemon` whose repo is under `repo_root` (found through /proc, recorded or not)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        repo = next((e[len(b"IPFS_PATH=") :] for e in env if e.startswith(b"IPFS_PATH=")), b"")
        if b"daemon" in cmd and repo.decode().startswith(str(repo_root)) and pid_alive(int(proc.name)):
            pids.append(int(proc.name))
    return sorted(pids)


def test_devnet_up_restores_stopped_nodes_and_the_chain_and_leaves_no_orphan(tmp_path: Path) -> None:
    state = tmp_path / "dn"
    port = free_port()
    up = _devnet("up", "--port", str(port), "--kubo", "2", "--block-time", "0", state=state)
    try:
        assert up.returncode == 0, up.stderr
        assert "new and empty" in up.stdout
        rec = _recorded(state)
        assert oct((state / "swarm.key").stat().st_mode & 0o777) == "0o600"
        assert rec["anvil"]["port"] == port
        address = Harness.create(connect(f"http://127.0.0.1:{port}")).fed.contract.address

        # a node killed: `up` brings it back on its repo, API port and peer id
        first, second = rec["kubo"]
        os.kill(first["pid"], signal.SIGKILL)
        again = _devnet("up", "--port", str(port), "--kubo", "2", state=state)
        assert again.returncode == 0, again.stderr
        assert "anvil already running" in again.stdout
        now = _recorded(state)["kubo"]
        assert [k["api_port"] for k in now] == [first["api_port"], second["api_port"]]
        assert [k["peer_id"] for k in now] == [first["peer_id"], second["peer_id"]]
        assert now[1]["pid"] == second["pid"] and now[0]["pid"] != first["pid"]
        assert _ipfs_daemons(state) == sorted(k["pid"] for k in now)

        # a daemon nobody recorded (its record lost) holds its repo: `up` stops it and records the new one
        doc = _recorded(state)
        stray = doc["kubo"].pop()["pid"]
        (state / "state.json").write_text(json.dumps(doc))
        third = _devnet("up", "--port", str(port), "--kubo", "2", state=state)
        assert third.returncode == 0, third.stderr
        now = _recorded(state)["kubo"]
        assert not pid_alive(stray) and len(now) == 2 and now[1]["api_port"] == second["api_port"]
        assert _ipfs_daemons(state) == sorted(k["pid"] for k in now)

        # down and up: the chain comes back with the federation, its storage and its logs
        assert _devnet("down", state=state).returncode == 0
        assert _ipfs_daemons(state) == []
        back = _devnet("up", "--port", str(port), "--kubo", "2", state=state)
        assert back.returncode == 0, back.stderr
        assert "restored from" in back.stdout
        chain = connect(f"http://127.0.0.1:{port}")
        assert FederationClient(chain, address).founders_pending() == 4
        assert len(chain.w3.eth.get_logs({"fromBlock": 0, "address": address})) > 0

        # --fresh: an empty chain, said so
        assert _devnet("down", state=state).returncode == 0
        fresh = _devnet("up", "--port", str(port), "--kubo", "1", "--fresh", state=state)
        assert fresh.returncode == 0 and "new and empty" in fresh.stdout
        assert not connect(f"http://127.0.0.1:{port}").w3.eth.get_code(address)
    finally:
        _devnet("down", state=state)
        for pid in _ipfs_daemons(state):  # whatever a failure above left: never leave processes behind
            stop_pid(pid)
    assert _ipfs_daemons(state) == []
