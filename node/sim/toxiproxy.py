"""Network faults on loopback: Shopify's toxiproxy between a peer and the services it talks to.

This machine's kernel has no `netem` qdisc, so latency, jitter, slow links,
stalled and reset connections are injected by toxiproxy (its Go module, built
by `make setup`), driven over its HTTP API. Each proxy listens on a free
loopback port and forwards to one upstream (anvil's RPC, a Kubo node's API); a
peer configured with the proxy's address sees every byte go through it, and
the toxics added to a proxy shape that traffic until they are removed.

    with Toxiproxy.start(log) as toxi:
        rpc = toxi.proxy("peer0-chain", "127.0.0.1:8545")   # -> "127.0.0.1:PORT"
        toxi.latency("peer0-chain", 100, jitter_ms=20)        # both directions
        toxi.clear("peer0-chain")
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ledger.devnet import free_port, stop_pid
from ledger.toolchain import toxiproxy_path
from node.errors import NodeError

__all__ = ["Toxiproxy"]


@dataclass
class Toxiproxy:
    """A running toxiproxy server: its API port, process id and the proxies it holds."""

    api_port: int
    pid: int
    proxies: dict[str, str] = field(default_factory=dict)  # name -> listen address

    @classmethod
    @contextmanager
    def start(cls, log: Path, timeout: float = 20.0) -> Iterator[Toxiproxy]:
        """Start the server on a free loopback port, yield it, stop it (and every proxy) at the end."""
        binary = toxiproxy_path()
        if binary is None:
            raise NodeError("toxiproxy is not installed: run `make setup`")
        port = free_port()
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [str(binary), "-host", "127.0.0.1", "-port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = cls(port, proc.pid)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise NodeError(f"toxiproxy exited with code {proc.returncode} at start (log: {log})")
                try:
                    server._api("GET", "/version")
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise NodeError(f"toxiproxy did not answer on port {port} within {timeout:.0f}s") from None
                    time.sleep(0.1)
            yield server
        finally:
            stop_pid(proc.pid)

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = requests.request(method, f"http://127.0.0.1:{self.api_port}{path}", json=body, timeout=10)
        if answer.status_code >= 400:
            raise NodeError(f"toxiproxy {method} {path}: {answer.status_code} {answer.text.strip()}")
        if not answer.content:
            return None
        return answer.json() if "json" in answer.headers.get("content-type", "") else answer.text

    def proxy(self, name: str, upstream: str) -> str:
        """A proxy named `name` from a free loopback port to `upstream` (host:port); returns its address."""
        listen = f"127.0.0.1:{free_port()}"
        self._api("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})
        self.proxies[name] = listen
        return listen

    def _toxic(self, proxy: str, kind: str, stream: str, **attributes: int) -> None:
        body = {"name": f"{kind}-{stream}", "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        self._api("POST", f"/proxies/{proxy}/toxics", body)

    def latency(self, proxy: str, ms: int, jitter_ms: int = 0) -> None:
        """Delay every byte `ms` ± `jitter_ms` milliseconds, each way."""
        for stream in ("upstream", "downstream"):
            self._toxic(proxy, "latency", stream, latency=ms, jitter=jitter_ms)

    def bandwidth(self, proxy: str, kb_per_second: int) -> None:
        """Limit the link to `kb_per_second` KB/s each way."""
        for stream in ("upstream", "downstream"):
            self._toxic(proxy, "bandwidth", stream, rate=kb_per_second)

    def stall(self, proxy: str) -> None:
        """Stop every byte, connections left open (a link that hangs) until `clear`."""
        self._toxic(proxy, "timeout", "upstream", timeout=0)

    def reset(self, proxy: str) -> None:
        """Reset every connection (TCP RST) as data arrives, until `clear`."""
        self._toxic(proxy, "reset_peer", "upstream", timeout=0)

    def peer_links(self, i: int, rpc: str, ipfs: str) -> tuple[str, str]:
        """Proxies `peer{i}-chain` to a chain RPC URL (http://host:port) and `peer{i}-ipfs` to a Kubo API
        multiaddr on loopback; the RPC URL and IPFS API address to configure peer i with instead."""
        chain = self.proxy(f"peer{i}-chain", rpc.removeprefix("http://"))
        api_port = ipfs.split("/tcp/")[1].split("/", maxsplit=1)[0]
        host, port = self.proxy(f"peer{i}-ipfs", f"127.0.0.1:{api_port}").split(":")
        return f"http://{chain}", f"/ip4/{host}/tcp/{port}/http"

    def clear(self, proxy: str) -> None:
        """Remove every toxic of `proxy`: the link is clean again."""
        for toxic in self._api("GET", f"/proxies/{proxy}/toxics") or []:
            self._api("DELETE", f"/proxies/{proxy}/toxics/{toxic['name']}")
