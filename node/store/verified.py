"""`fetch_verified`: the one way fetched bytes become parameters.

Content from a store is untrusted. Every fetch goes the same way: by CID with a
size cap, then the bytes are checked against the hash the chain holds, then
strictly decoded against the model's layout (never unpickled). The peer, model
adoption, the dev-net demo and `fedchain audit verify` all call this.
"""

from __future__ import annotations

from collections.abc import Callable

from node.core.codec import IntArray, Layout, UpdateRejected, content_hash, decode
from node.errors import NodeError
from node.store.stores import Store

__all__ = ["ContentMismatch", "fetch_verified"]


class ContentMismatch(UpdateRejected):
    """Fetched bytes that do not hash to what the chain holds."""


# Opens sealed bytes (`node.privacy.sealing`) to the content their hash was committed for; raises NodeError.
Opener = Callable[[bytes], bytes]


def fetch_verified(
    store: Store,
    cid: str,
    expected_hash: bytes,
    layout: Layout,
    max_size: int,
    timeout: float | None = None,
    opener: tuple[Opener, int] | None = None,
) -> dict[str, IntArray]:
    """The parameters stored at `cid`, if they hash to `expected_hash` and decode against `layout`; sealed
    (`opener`: how to open, and how many bytes sealing may add), opened first.

    Raises `StoreError` if the store cannot deliver at most `max_size` bytes (plus the slack), `UpdateRejected`
    if sealed bytes do not open, and
    `ContentMismatch` if the bytes do not hash to `expected_hash`, `UpdateRejected` if
    they are malformed or not in the canonical encoding (one update, one hash).
    """
    cap = max_size + (opener[1] if opener else 0)
    data = store.get(cid, cap) if timeout is None else store.get(cid, cap, timeout=timeout)
    if opener is not None:
        try:
            data = opener[0](data)
        except NodeError as exc:
            raise UpdateRejected(str(exc)) from exc
    if content_hash(data) != expected_hash:
        raise ContentMismatch("content does not match its on-chain hash")
    return decode(data, layout, canonical=True)
