"""Hosts on one machine: Linux network namespaces joined by veth pairs to a bridge.

Each host (the chain node; each peer's daemon with its Kubo node) gets its own
network namespace, with loopback and one address in a private /24 that exists
only while the topology does. Every namespace is joined by a veth pair to one
bridge in the root namespace, which holds the subnet's `.254` address so the
process that built the topology reaches every host (to read the chain, to talk
to a Kubo API). Nothing leaves the machine: the subnet has no route out.

A partition sets the bridge's end of a host's veth down: the host's packets go
nowhere, as when a data centre's uplink fails, so open TCP connections hang
rather than reset; `heal` sets it up again.

    with Topology.create(["chain", "peer0", "peer1"]) as net:
        argv = [*net.run_in("peer0"), "ipfs", "daemon"]   # ip netns exec ...
        net.address("chain")                               # "10.250.7.1"
        net.partition("peer1"); net.heal("peer1")

Building one needs root (CAP_NET_ADMIN and `ip netns`): without it
`Topology.create` raises one NodeError line; it never skips quietly.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from node.errors import NodeError

__all__ = ["Topology"]

SUBNET_PREFIX = "10.250"  # /24s 10.250.1.0 .. 10.250.254.0: one free one is taken per topology
BRIDGE_HOST = 254


def _ip(*args: str) -> str:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise NodeError("network namespaces need the `ip` command (iproute2), which is not installed") from None
    except subprocess.TimeoutExpired:
        raise NodeError(f"`ip {' '.join(args)}` did not finish within 30s") from None
    if done.returncode != 0:
        raise NodeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _free_subnet() -> str:
    """A 10.250.N.0/24 that no interface or route of this machine uses."""
    used = _ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show", "table", "all")
    start = os.getpid() % 254
    for k in range(254):
        n = (start + k) % 254 + 1
        if f"{SUBNET_PREFIX}.{n}." not in used:
            return f"{SUBNET_PREFIX}.{n}"
    raise NodeError(f"no free /24 under {SUBNET_PREFIX}.0.0/16 for a test topology")


@dataclass
class Topology:
    """Namespaces by host name, each at `subnet.(i+1)`, and the bridge at `subnet.254`."""

    tag: str
    subnet: str
    hosts: list[str]
    created: list[str] = field(default_factory=list)  # hosts whose namespace is made (removed at the end)
    bridge_made: bool = False

    @classmethod
    @contextmanager
    def create(cls, hosts: Sequence[str]) -> Iterator[Topology]:
        """Build the namespaces, veth pairs and bridge; remove every one of them at the end."""
        if len(set(hosts)) != len(hosts) or not 0 < len(hosts) < BRIDGE_HOST:
            raise NodeError(f"a topology needs 1 to {BRIDGE_HOST - 1} distinct host names")
        if shutil.which("ip") is None:
            raise NodeError("network namespaces need the `ip` command (iproute2), which is not installed")
        if os.geteuid() != 0:
            raise NodeError("network namespaces need root (CAP_NET_ADMIN): run as root")
        net = cls(secrets.token_hex(2), _free_subnet(), list(hosts))
        try:
            net._build()
            yield net
        except BaseException:
            with suppress(NodeError):  # the error being raised says more than a failed cleanup
                net._remove()
            raise
        net._remove()

    @property
    def bridge(self) -> str:
        return f"fcb{self.tag}"

    def namespace(self, host: str) -> str:
        return f"fedchain-{self.tag}-{host}"

    def _veth(self, host: str) -> str:
        return f"fcv{self.tag}-{self.hosts.index(host)}"  # at most 15 characters: fcvXXXX-253

    def address(self, host: str) -> str:
        """The host's address on the bridge's subnet."""
        return f"{self.subnet}.{self.hosts.index(host) + 1}"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the subnet (where this process is seen from)."""
        return f"{self.subnet}.{BRIDGE_HOST}"

    def run_in(self, host: str) -> list[str]:
        """The argv prefix that runs a command inside the host's namespace (the command keeps its pid)."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def partition(self, host: str) -> None:
        """Cut the host off from every other host (and from this process): its link goes down."""
        _ip("link", "set", self._veth(host), "down")

    def heal(self, host: str) -> None:
        _ip("link", "set", self._veth(host), "up")

    def _build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.bridge_made = True
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            ns, veth = self.namespace(host), self._veth(host)
            _ip("netns", "add", ns)
            self.created.append(host)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def _remove(self) -> None:
        """Delete the veth pairs, the namespaces and the bridge; every step is tried. (Deleting a namespace
        frees its veth pair only later, in the kernel's own time: each pair is deleted first, at once.)"""
        errors = []
        for host in reversed(self.created):
            for step in (("link", "del", self._veth(host)), ("netns", "del", self.namespace(host))):
                try:
                    _ip(*step)
                except NodeError as exc:
                    if "Cannot find device" not in str(exc):
                        errors.append(str(exc))
        self.created.clear()
        if self.bridge_made:
            try:
                _ip("link", "del", self.bridge)
            except NodeError as exc:
                errors.append(str(exc))
            self.bridge_made = False
        if errors:
            raise NodeError("; ".join(errors))
