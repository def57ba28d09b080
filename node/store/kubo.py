"""Run Kubo (IPFS) nodes for a private swarm: init, configure, start, connect, stop.

A consortium's nodes share a swarm key, so they talk only to each other; this
module makes such nodes on 127.0.0.1 for the dev-net and the tests.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.devnet import free_port, pid_alive, stop_pid
from ledger.files import write_atomic
from ledger.toolchain import kubo_path
from node.errors import NodeError

__all__ = ["KuboNode", "ensure_nodes", "new_swarm_key", "start_kubo"]


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
    host: str = "127.0.0.1"  # where its API and swarm listen (a network namespace's address, in fault runs)

    @property
    def api(self) -> str:
        return f"/ip4/{self.host}/tcp/{self.api_port}/http"

    @property
    def swarm_addr(self) -> str:
        return f"/ip4/{self.host}/tcp/{self.swarm_port}/p2p/{self.peer_id}"

    def ipfs(self, *args: str, timeout: float = 60) -> str:
        return _ipfs(Path(self.repo), *args, timeout=timeout)

    def connect(self, other: KuboNode) -> None:
        """Connect to `other` now, and keep it a peering: Kubo reconnects (with backoff) whenever the
        connection drops, after a partition or when either node restarts, as a consortium's nodes must."""
        self.ipfs("swarm", "peering", "add", other.swarm_addr)
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


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Kubo binds: TIME_WAIT is no owner
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _configured_port(repo: Path, key: str) -> int | None:
    """The TCP port of the repo's configured address `key` (API or Swarm), if any."""
    try:
        addrs = json.loads((repo / "config").read_text())["Addresses"][key]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    addr = addrs[0] if isinstance(addrs, list) and addrs else addrs
    parts = str(addr).split("/")
    return int(parts[4]) if len(parts) > 4 and parts[3] == "tcp" and parts[4].isdigit() else None


def _stop_stray_daemon(repo: Path, timeout: float = 30.0) -> None:
    """Shut down a daemon still serving `repo` that nobody recorded (it would hold the repo's lock)."""
    if not (repo / "api").exists():
        return
    try:
        _ipfs(repo, "shutdown", timeout=10)
    except NodeError:
        return  # the api file is stale: no daemon answers on it
    deadline = time.monotonic() + timeout
    while (repo / "api").exists():  # Kubo removes it as it exits
        if time.monotonic() > deadline:
            raise NodeError(f"a Kubo daemon on {repo} did not stop within {timeout:.0f}s: stop it by hand")
        time.sleep(0.1)


def start_kubo(
    repo: Path,
    swarm_key: str,
    timeout: float = 60.0,
    api_port: int | None = None,
    swarm_port: int | None = None,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
) -> KuboNode:
    """Init a repo (if new), private to `swarm_key`, and start its daemon on loopback (or on `host`, run
    through the argv `prefix`: a network namespace's address and `ip netns exec` for fault runs).

    A repo that ran before keeps its API and swarm ports (and its peer id) when they are
    still free, so whatever was configured to reach it still does. A daemon still serving
    the repo without being recorded anywhere is shut down first.
    """
    if not (repo / "config").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _ipfs(repo, "init", "--profile=test", "--empty-repo")
    else:
        _stop_stray_daemon(repo)
    write_atomic(repo / "swarm.key", swarm_key, mode=0o600)

    def port(wanted: int | None, key: str) -> int:
        for candidate in (wanted, _configured_port(repo, key)):
            if candidate and _port_free(candidate):
                return candidate
        return free_port()

    api_port, swarm_port, gateway_port = port(api_port, "API"), port(swarm_port, "Swarm"), free_port()
    for key, value in (
        ("Addresses.API", json.dumps(f"/ip4/{host}/tcp/{api_port}")),
        ("Addresses.Gateway", json.dumps(f"/ip4/{host}/tcp/{gateway_port}")),
        ("Addresses.Swarm", json.dumps([f"/ip4/{host}/tcp/{swarm_port}"])),
        ("Bootstrap", "[]"),
        ("Routing.Type", json.dumps("dht")),
        ("AutoConf.Enabled", "false"),
    ):
        _ipfs(repo, "config", "--json", key, value)
    peer_id = _ipfs(repo, "config", "Identity.PeerID").strip()
    env = {**os.environ, "IPFS_PATH": str(repo), "LIBP2P_FORCE_PNET": "1"}
    log_path = repo / "daemon.log"
    start = log_path.stat().st_size if log_path.exists() else 0  # an earlier run's "ready" must not count
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*prefix, str(kubo_path()), "daemon"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node = KuboNode(str(repo), api_port, swarm_port, peer_id, proc.pid, host)
    deadline = time.monotonic() + timeout
    while b"Daemon is ready" not in log_path.read_bytes()[start:]:
        if proc.poll() is not None:
            raise NodeError(f"Kubo exited with code {proc.returncode} at start (log: {repo / 'daemon.log'})")
        if time.monotonic() > deadline:
            node.stop()
            raise NodeError(f"Kubo did not start within {timeout:.0f}s (log: {repo / 'daemon.log'})")
        time.sleep(0.1)
    return node


def ensure_nodes(
    root: Path, records: list[dict[str, Any]], count: int, swarm_key: str, started: Callable[[KuboNode], None]
) -> list[KuboNode]:
    """Nodes `root/kubo-0` .. `kubo-{count-1}` running and connected: recorded live ones kept, the rest (re)started.

    A node that stopped comes back on its repo, ports and peer id. `started` hears of each
    node as soon as its daemon runs, before anything else can fail, so the caller records
    every process it started.
    """
    known = {Path(str(k["repo"])).name: KuboNode(**k) for k in records}
    nodes: list[KuboNode] = []
    for i in range(max(count, len(known))):
        name = f"kubo-{i}"
        old = known.get(name)
        if old is not None and pid_alive(old.pid):
            nodes.append(old)
            continue
        if i >= count:  # beyond what was asked for: kept if running, not restarted
            continue
        node = start_kubo(
            root / name, swarm_key, api_port=old.api_port if old else None, swarm_port=old.swarm_port if old else None
        )
        started(node)
        nodes.append(node)
        for other in nodes[:-1]:
            node.connect(other)
    return nodes
