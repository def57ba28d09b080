"""Run Kubo (IPFS) nodes for a private swarm: init, configure, start, connect, stop.

A consortium's nodes share a swarm key, so they talk only to each other; this
module makes such nodes on 127.0.0.1 for the dev-net and the tests.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ledger.devnet import free_port, stop_pid
from ledger.toolchain import kubo_path
from node.errors import NodeError

__all__ = ["KuboNode", "new_swarm_key", "start_kubo"]


def new_swarm_key() -> str:
    """A fresh private-network key in the format Kubo reads from `swarm.key`."""
    return "/key/swarm/psk/1.0.0/\n/base16/\n" + secrets.token_hex(32) + "\n"


@dataclass
class KuboNode:
    """A running Kubo daemon: its repo, ports, peer id and process id."""

    repo: str
    api_port: int
    swarm_port: int
    peer_id: str
    pid: int

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.api_port}/http"

    @property
    def swarm_addr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.swarm_port}/p2p/{self.peer_id}"

    def ipfs(self, *args: str, timeout: float = 60) -> str:
        return _ipfs(Path(self.repo), *args, timeout=timeout)

    def connect(self, other: KuboNode) -> None:
        self.ipfs("swarm", "connect", other.swarm_addr)

    def stop(self) -> None:
        stop_pid(self.pid)


def _ipfs(repo: Path, *args: str, timeout: float = 60) -> str:
    binary = kubo_path()
    if binary is None:
        raise NodeError("Kubo (ipfs) is not installed: run `make setup`")
    env = {**os.environ, "IPFS_PATH": str(repo), "LIBP2P_FORCE_PNET": "1"}
    try:
        out = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.CalledProcessError as exc:
        raise NodeError(f"ipfs {' '.join(args)} failed: {exc.stderr.strip() or exc.stdout.strip()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise NodeError(f"ipfs {' '.join(args)} did not finish within {timeout:.0f}s") from exc
    return out.stdout


def start_kubo(repo: Path, swarm_key: str, timeout: float = 60.0) -> KuboNode:
    """Init a repo (if new) on free loopback ports, private to `swarm_key`, and start its daemon."""
    if not (repo / "config").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _ipfs(repo, "init", "--profile=test", "--empty-repo")
    (repo / "swarm.key").write_text(swarm_key)
    api_port, swarm_port, gateway_port = free_port(), free_port(), free_port()
    for key, value in (
        ("Addresses.API", json.dumps(f"/ip4/127.0.0.1/tcp/{api_port}")),
        ("Addresses.Gateway", json.dumps(f"/ip4/127.0.0.1/tcp/{gateway_port}")),
        ("Addresses.Swarm", json.dumps([f"/ip4/127.0.0.1/tcp/{swarm_port}"])),
        ("Bootstrap", "[]"),
        ("Routing.Type", json.dumps("dht")),
        ("AutoConf.Enabled", "false"),
    ):
        _ipfs(repo, "config", "--json", key, value)
    peer_id = _ipfs(repo, "config", "Identity.PeerID").strip()
    env = {**os.environ, "IPFS_PATH": str(repo), "LIBP2P_FORCE_PNET": "1"}
    with open(repo / "daemon.log", "ab") as log:
        proc = subprocess.Popen(
            [str(kubo_path()), "daemon"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node = KuboNode(str(repo), api_port, swarm_port, peer_id, proc.pid)
    deadline = time.monotonic() + timeout
    while b"Daemon is ready" not in (repo / "daemon.log").read_bytes():
        if proc.poll() is not None:
            raise NodeError(f"Kubo exited with code {proc.returncode} at start (log: {repo / 'daemon.log'})")
        if time.monotonic() > deadline:
            node.stop()
            raise NodeError(f"Kubo did not start within {timeout:.0f}s (log: {repo / 'daemon.log'})")
        time.sleep(0.1)
    return node
