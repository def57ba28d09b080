"""One suite for both stores: the embedded one and Kubo (two nodes in a private swarm)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.store import KuboStore, Store, StoreError, raw_cid
from node.store.kubo import KuboNode, new_swarm_key, start_kubo
from tests.harness import cli_env


def test_put_then_get_from_another_node(stores: tuple[Store, Store]) -> None:
    writer, reader = stores
    with pytest.raises(StoreError, match="empty"):
        writer.put(b"")
    for size in (1, 100, 300_000, 2_000_000):  # one block, and several chunks
        data = os.urandom(size)
        cid = writer.put(data)
        assert writer.put(data) == cid  # content addressed
        assert reader.get(cid, max_size=size) == data


def test_small_content_has_the_same_cid_everywhere(stores: tuple[Store, Store]) -> None:
    writer, _ = stores
    data = b"a small update"
    assert writer.put(data) == raw_cid(data)


def test_oversized_and_invalid_requests_are_refused(stores: tuple[Store, Store]) -> None:
    writer, reader = stores
    cid = writer.put(os.urandom(5000))
    with pytest.raises(StoreError, match="allowed"):
        reader.get(cid, max_size=4999)
    for bad in ("", "not-a-cid", "../../etc/passwd", "Qm" + "0" * 44):
        with pytest.raises(StoreError, match="not a CID"):
            reader.get(bad, max_size=10)


def test_missing_content_is_an_error_not_a_hang(stores: tuple[Store, Store]) -> None:
    _, reader = stores
    if isinstance(reader, KuboStore):
        reader = KuboStore(reader.api, timeout=2)
    with pytest.raises(StoreError):
        reader.get(raw_cid(os.urandom(16)), max_size=100)


@pytest.mark.kubo
def test_a_node_outside_the_swarm_key_cannot_connect(kubo_pair: tuple[KuboNode, KuboNode], tmp_path: Path) -> None:
    a, _ = kubo_pair
    stranger = start_kubo(tmp_path / "stranger", new_swarm_key())
    try:
        with pytest.raises(Exception, match="failed"):
            stranger.connect(a)
    finally:
        stranger.stop()


def test_unreachable_ipfs_api_is_a_store_error() -> None:
    from ledger.devnet import free_port

    store = KuboStore(f"/ip4/127.0.0.1/tcp/{free_port()}/http", timeout=2)
    with pytest.raises(StoreError, match="no IPFS API answer"):
        store.version()
    with pytest.raises(StoreError):
        store.put(b"x")


def test_urllib3s_strict_warning_from_ipfshttpclient_is_silenced_and_only_it() -> None:
    """ipfshttpclient passes urllib3 a `strict` argument it warns about on every new pool; the daemons'
    logs showed it. A fresh process that turns FutureWarnings into errors must still get a StoreError."""
    script = (
        "import warnings\n"
        "from node.store import KuboStore, StoreError\n"
        "from ledger.devnet import free_port\n"
        "try:\n"
        "    KuboStore(f'/ip4/127.0.0.1/tcp/{free_port()}/http', timeout=2).version()\n"
        "except StoreError:\n"
        "    print('store error')\n"
        "warnings.warn('another FutureWarning', FutureWarning)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", script],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.stdout == "store error\n", out.stderr
    assert out.returncode == 1 and "FutureWarning: another FutureWarning" in out.stderr  # others still raise
