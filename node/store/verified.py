"""`fetch_verified`: the one way fetched bytes become parameters.

Content from a store is untrusted. Every fetch goes the same way: by CID with a
size cap, then the bytes are checked against the hash the chain holds, then
strictly decoded against the model's layout (never unpickled). The peer, model
adoption, the dev-net demo and `fedchain audit verify` all call this.
"""

from __future__ import annotations

from node.core.codec import IntArray, Layout, UpdateRejected, content_hash, decode
from node.store.stores import Store

__all__ = ["ContentMismatch", "fetch_verified"]


class ContentMismatch(UpdateRejected):
    """Fetched bytes that do not hash to what the chain holds."""


def fetch_verified(
    store: Store, cid: str, expected_hash: bytes, layout: Layout, max_size: int, timeout: float | None = None
) -> dict[str, IntArray]:
    """The parameters stored at `cid`, if they hash to `expected_hash` and decode against `layout`.

    Raises `StoreError` if the store cannot deliver at most `max_size` bytes, and
    `ContentMismatch` if the bytes do not hash to `expected_hash`, `UpdateRejected` if
    they are malformed or not in the canonical encoding (one update, one hash).
    """
    data = store.get(cid, max_size) if timeout is None else store.get(cid, max_size, timeout=timeout)
    if content_hash(data) != expected_hash:
        raise ContentMismatch("content does not match its on-chain hash")
    return decode(data, layout, canonical=True)
