"""JSON-RPC over HTTP on kept-alive `http.client` connections, one per thread.

web3's HTTP provider posts through `requests`, which costs about 0.7 ms of CPU a
call on this machine against 0.13 ms for `http.client` (measured against anvil,
`eth_blockNumber`). A peer makes tens of calls a round, and ten peers in one
process contend for one interpreter lock, so that difference was a fifth of a
dev-net round's CPU. Only the transport changes: web3 still encodes requests
and decodes responses.

A failure is a `ConnectionError` (an `OSError`), which `network_errors` maps to
`ChainUnreachable`. A request that fails on a kept-alive connection the server
has since closed is sent once more on a fresh one (the server never read it);
any other failure is not retried here: the daemon's loop backs off and retries.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse

__all__ = ["HttpTransport"]

_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class HttpTransport:
    """POST bodies to one URL and return the response bodies."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectionError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._local = threading.local()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout)
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        while True:
            conn, reused = self._connection()
            try:
                conn.request("POST", self._path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE as exc:
                self._drop()
                if reused:
                    continue  # closed while idle: the server never read the request
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if isinstance(exc, ConnectionError | TimeoutError):
                    raise
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
            if response.will_close:
                self._drop()
            if response.status != 200:
                raise ConnectionError(f"HTTP {response.status} {response.reason}")
            return data
