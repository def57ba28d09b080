"""Content-addressed storage: the embedded store, Kubo, Kubo processes, and verified fetches."""

from node.store.stores import (
    STORE_TIMEOUT,
    EmbeddedStore,
    KuboStore,
    Store,
    StoreError,
    StoreRefused,
    StoreUnreachable,
    open_store,
    raw_cid,
)
from node.store.verified import fetch_verified

__all__ = [
    "STORE_TIMEOUT",
    "EmbeddedStore",
    "KuboStore",
    "Store",
    "StoreError",
    "StoreRefused",
    "StoreUnreachable",
    "fetch_verified",
    "open_store",
    "raw_cid",
]
