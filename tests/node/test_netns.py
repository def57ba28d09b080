"""The network-namespace topology the partition tests run on: built, partitioned, healed, removed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from node.errors import NodeError
from node.sim import netns
from node.sim.netns import Topology

pytestmark = pytest.mark.netns


def _reach(net: Topology, src: str, dst: str, port: int, within: float = 10) -> bool:
    """Whether a TCP connect from host `src` to `dst:port` succeeds within `within` seconds (a fresh connect
    each second, as a client retrying does: one whose address lookup failed during a partition stays failed)."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{within}\n"
        "while time.monotonic()<end:\n"
        "    s=socket.socket(); s.settimeout(1)\n"
        f"    if s.connect_ex(({net.address(dst)!r}, {port}))==0: sys.exit(0)\n"
        "    s.close(); time.sleep(0.1)\n"
        "sys.exit(1)\n"
    )
    return subprocess.run([*net.run_in(src), sys.executable, "-c", code], check=False, timeout=60).returncode == 0


def test_hosts_reach_each_other_until_partitioned_and_again_once_healed_and_nothing_is_left() -> None:
    with Topology.create(["chain", "peer0", "peer1"]) as net:
        names = [net.namespace(h) for h in net.hosts]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert all(n in listed for n in names)
        server = subprocess.Popen(
            [*net.run_in("chain"), sys.executable, "-m", "http.server", "8000", "--bind", net.address("chain")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert _answers(net.address("chain"), 8000), "the server in the chain namespace never answered"
            assert _reach(net, "peer0", "chain", 8000) and _reach(net, "peer1", "chain", 8000)
            net.partition("peer0")
            assert not _reach(net, "peer0", "chain", 8000, within=3)
            assert _reach(net, "peer1", "chain", 8000)  # the others still talk
            net.heal("peer0")
            assert _reach(net, "peer0", "chain", 8000)
        finally:
            server.kill()
            server.wait()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert not any(n in listed for n in names) and net.bridge not in links and f"fcv{net.tag}" not in links


def _answers(host: str, port: int) -> bool:
    """Whether `host:port` accepts a connection from this process (through the bridge) within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def test_without_root_it_is_one_clear_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    refused = r"^network namespaces need root \(CAP_NET_ADMIN\): run as root$"
    with pytest.raises(NodeError, match=refused), Topology.create(["a", "b"]):
        pass
