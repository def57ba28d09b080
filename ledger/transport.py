"""JSON-RPC over HTTP on kept-alive `http.client` connections, one per thread.

web3's HTTP provider posts through `requests`, which costs about 0.7 ms of CPU a
call on this machine against 0.13 ms for `http.client` (measured against anvil,
`eth_blockNumber`). A peer makes tens of calls a round, and ten peers in one
process contend for one interpreter lock, so that difference was a fifth of a
dev-net round's CPU. Only the transport changes: web3 still encodes requests
and decodes responses. What `requests` did that a node's URL may need is kept:
credentials in the URL (basic auth), the CA bundle `requests` trusts (certifi,
or `REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`), a User-Agent. Behind an HTTP proxy
(`HTTP(S)_PROXY`) the provider keeps `requests` (`proxied`).

A failure is a `ConnectionError` (an `OSError`), which `network_errors` maps to
`ChainUnreachable`. A kept-alive connection the server has closed while idle is
noticed before it is used (the socket reads as closed) and replaced; nothing is
ever sent twice: a request that fails once sent is not retried here (a signed
transaction must not go out twice), the daemon's loop backs off and retries.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import ssl
import threading
import urllib.parse
import urllib.request

__all__ = ["HttpTransport", "proxied"]

USER_AGENT = "fedchain (http.client)"


def proxied(url: str) -> bool:
    """Whether the environment sends requests to `url` through a proxy (then `requests` handles it)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(parts.scheme)) and not urllib.request.proxy_bypass(parts.hostname or "")


def _tls_context() -> ssl.SSLContext:
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if not cafile:
        try:
            import certifi  # requests' own CA bundle (a dependency of requests)

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)


class HttpTransport:
    """POST bodies to one URL and return the response bodies."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConnectionError(f"bad port in {url!r}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectionError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._context = _tls_context() if self._https else None
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection: a new one if there is none, or if the server closed it while idle."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            self._drop()  # readable while idle: the server closed it (or sent what nobody asked for)
            conn = None
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def post(self, body: bytes) -> bytes:
        conn = self._connection()
        try:
            conn.request("POST", self._path, body, self._headers)
            response = conn.getresponse()
            data = response.read()
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
