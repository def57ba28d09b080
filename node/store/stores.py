"""Content-addressed storage for updates and models: one interface, two implementations.

- `KuboStore`: a Kubo (IPFS) node over its RPC API, through ipfshttpclient.
  Adds are pinned and use CIDv1 with raw leaves, so the same bytes get the same
  CID on every peer with the same settings.
- `EmbeddedStore`: a directory of files named by CID, for single-machine runs
  with no daemon. Its CIDs are CIDv1 raw-block sha2-256, as IPFS would name a
  single small block.

Content fetched from a store is untrusted: `get` never returns more than
`max_size` bytes (it fails instead), and callers check the hash they expect.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Protocol

from ledger.files import write_atomic
from node.errors import NodeError

__all__ = [
    "EmbeddedStore",
    "KuboStore",
    "Store",
    "StoreError",
    "StoreRefused",
    "STORE_TIMEOUT",
    "StoreUnreachable",
    "open_store",
    "raw_cid",
]

_CID = re.compile(r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{20,120})$")


STORE_TIMEOUT = 30.0  # seconds a Kubo request may take unless the caller says otherwise
PROBE_TIMEOUT = 5.0  # seconds our own node has to answer a version request after a failed read


class StoreError(NodeError):
    """A store could not be reached, or refused or lost content."""


class StoreUnreachable(StoreError):
    """The reader's own node does not answer: an outage to wait out, nobody's content to blame."""


class StoreRefused(StoreError):
    """The sender's fault, not an outage: a CID that is not one, or content larger than the caller allows."""


class Store(Protocol):
    """Where updates and models live, by content id."""

    def put(self, data: bytes) -> str:
        """Store (and pin) non-empty `data`; returns its CID."""
        ...

    def get(self, cid: str, max_size: int, timeout: float | None = None) -> bytes:
        """The bytes behind `cid`, at most `max_size` of them (else StoreError); `timeout` seconds at most
        where fetching can wait on the network (None: the store's own)."""
        ...


def raw_cid(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256 multihash, base32: the CID IPFS gives a single raw block."""
    digest = hashlib.sha256(data).digest()
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def _check_cid(cid: str) -> None:
    if not isinstance(cid, str) or not _CID.match(cid):
        raise StoreRefused(f"{cid!r} is not a CID")


def _check_data(data: bytes) -> None:
    # Kubo stores no block for empty content, so a peer could never fetch it.
    if not data:
        raise StoreError("refusing to store empty content")


class EmbeddedStore:
    """A directory of blobs named by their CID; safe for several processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        _check_data(data)
        cid = raw_cid(data)
        path = self.root / cid
        if not path.exists():
            write_atomic(path, data, fsync=False)  # content-addressed: a torn write is caught by its hash
        return cid

    def get(self, cid: str, max_size: int, timeout: float | None = None) -> bytes:
        _check_cid(cid)
        path = self.root / cid
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise StoreError(f"{cid} is not in the store at {self.root}") from exc
        if size > max_size:
            raise StoreRefused(f"{cid} is {size} bytes, more than the {max_size} allowed")
        return path.read_bytes()


def open_store(address: str, base: Path | None = None) -> Store:
    """`embedded:DIR` (relative to `base`) or a Kubo API multiaddr; a Kubo API is checked to answer."""
    if address.startswith("embedded:"):
        return EmbeddedStore((base or Path.cwd()) / address.removeprefix("embedded:"))
    store = KuboStore(address)
    store.version()  # fail now, not at the first fetch
    return store


class KuboStore:
    """A Kubo node's RPC API (e.g. /ip4/127.0.0.1/tcp/5001/http)."""

    def __init__(self, api: str, timeout: float = STORE_TIMEOUT) -> None:
        import ipfshttpclient

        # ipfshttpclient 0.8.0a2 (unmaintained) builds urllib3's PoolManager with strict=True
        # (requests_wrapper.py), and urllib3 2.x warns at every new connection pool that the parameter
        # goes in 3.0: the daemons' logs filled with it. Nothing of ours to change, so only that message,
        # from that module, is silenced (for the process; adding the same filter again replaces it).
        warnings.filterwarnings(
            "ignore",
            message="The 'strict' parameter is no longer needed",
            category=FutureWarning,
            module="urllib3.poolmanager",
        )
        self.api, self.timeout = api, timeout
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # 0.8.0a2 warns about Kubo newer than it knows
                # Client() rather than connect(): connect() refuses daemons newer than 0.8.
                self._client = ipfshttpclient.Client(api, timeout=timeout, session=True)
        except Exception as exc:
            raise StoreError(f"cannot use the IPFS API at {api}: {exc}") from exc
        self._errors: tuple[type[BaseException], ...] = (ipfshttpclient.exceptions.Error, OSError)

    def _unreachable(self, exc: BaseException) -> bool:
        """Whether a failed read was our node's link failing (a broken or reset connection, or a node
        that no longer answers even a version request) rather than content the network did not give."""
        import ipfshttpclient

        if isinstance(exc, ipfshttpclient.exceptions.ConnectionError | ipfshttpclient.exceptions.ProtocolError):
            return True
        try:
            self._client.version(timeout=PROBE_TIMEOUT)
        except self._errors:
            return True
        return False

    def version(self) -> str:
        try:
            return str(self._client.version()["Version"])
        except self._errors as exc:
            raise StoreError(f"no IPFS API answer at {self.api}: {exc}") from exc

    def put(self, data: bytes) -> str:
        _check_data(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                added = self._client.add(io.BytesIO(data), cid_version=1, raw_leaves=True, pin=True)
        except self._errors as exc:
            raise StoreError(f"IPFS add failed at {self.api}: {exc}") from exc
        return str(added["Hash"])

    def get(self, cid: str, max_size: int, timeout: float | None = None) -> bytes:
        _check_cid(cid)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = bytes(self._client.cat(cid, length=max_size + 1, timeout=timeout or self.timeout))
        except self._errors as exc:
            if self._unreachable(exc):
                raise StoreUnreachable(f"the IPFS node at {self.api} does not answer: {exc}") from exc
            raise StoreError(f"IPFS cat {cid} failed at {self.api}: {exc}") from exc
        if len(data) > max_size:
            raise StoreRefused(f"{cid} is more than the {max_size} bytes allowed")
        return data

    def close(self) -> None:
        self._client.close()
