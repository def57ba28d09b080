"""The lean call path (`ledger.abi`, `ledger.transport`, `Chain.call`, `Chain.wait_for_block`) against
web3's own: the same calldata, the same decoded views and events, on both chains; a kept-alive
connection the server dropped is retried once; a new block wakes a waiting peer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.abi import checksum
from ledger.chain import Chain, connect
from ledger.errors import ChainUnreachable
from ledger.transport import HttpTransport
from tests.harness import Harness


def test_views_decode_as_web3_decodes_them(joined: Harness) -> None:
    h = joined
    r = h.play()
    h.commit(h.members[0])
    fed, contract = h.fed, h.fed.contract
    member = h.members[0].address
    for name, args in [
        ("roundInfo", (r,)),
        ("roundInfo", (r + 1,)),
        ("stepView", (member,)),
        ("memberList", ()),
        ("memberOf", (member,)),
        ("config", ()),
        ("token", ()),
        ("statusOf", (r + 1, member)),
        ("credited", (member,)),
    ]:
        ours = fed._view(name, *args)
        theirs = getattr(contract.functions, name)(*args).call()
        assert ours == (tuple(theirs) if isinstance(theirs, list) else theirs), name
        calldata = fed._call(name, *args).data
        assert calldata == bytes.fromhex(getattr(contract.functions, name)(*args)._encode_transaction_data()[2:])


def test_events_decode_as_web3_decodes_them(joined: Harness) -> None:
    h = joined
    h.play()
    logs = h.chain.logs(h.fed.address, h.deployment.block)
    for name in ("Revealed", "Proposed", "Voted", "RoundFinalized", "MemberJoined", "RoundOpened"):
        ours = h.fed.events(name, h.deployment.block)
        event = getattr(h.fed.contract.events, name)()
        topic = bytes.fromhex(event.topic.removeprefix("0x"))
        theirs = [event.process_log(lg) for lg in logs if bytes(lg["topics"][0]) == topic]
        assert ours and len(ours) == len(theirs), name
        for a, b in zip(ours, theirs, strict=True):
            assert a["args"] == {k: (tuple(v) if isinstance(v, list) else v) for k, v in b["args"].items()}, name
            assert (a["blockNumber"], a["logIndex"]) == (b["blockNumber"], b["logIndex"])


def test_addresses_come_back_checksummed() -> None:
    lower = "0x" + "ab" * 20
    assert checksum(lower) == checksum(lower.upper().replace("0X", "0x")) != lower


@pytest.fixture
def dropping_server() -> Iterator[tuple[str, list[int]]]:
    """An HTTP/1.1 JSON-RPC stub that answers one request per connection, then closes it without saying
    so (as a node closing an idle kept-alive connection): the URL and the connections it accepted."""
    body = b'{"jsonrpc":"2.0","id":0,"result":"0x2a"}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            with conn:
                conn.recv(65536)
                conn.sendall(answer)
                time.sleep(0.05)  # closed after the answer, before the client's next request

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_dropped_keep_alive_connection_is_retried_once_on_a_fresh_one(
    dropping_server: tuple[str, list[int]],
) -> None:
    url, accepted = dropping_server
    transport = HttpTransport(url, timeout=5.0)
    for _ in range(3):
        assert b'"0x2a"' in transport.post(b'{"jsonrpc":"2.0","id":0,"method":"eth_chainId","params":[]}')
        time.sleep(0.1)
    assert len(accepted) == 3  # a fresh connection each time the old one was found closed


def test_no_server_is_a_one_line_chain_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(ChainUnreachable, match=f"no JSON-RPC answer at http://127.0.0.1:{port}"):
        connect(f"http://127.0.0.1:{port}")


@pytest.mark.anvil
def test_a_new_block_wakes_a_waiting_peer_and_none_lets_it_sleep(anvil: Any) -> None:
    chain: Chain = connect(anvil.url)
    other = connect(anvil.url)
    assert not chain.wait_for_block(0.2)  # the first call installs the filter
    assert not chain.wait_for_block(0.3)  # no block: the whole timeout
    t = time.monotonic()
    timer = threading.Timer(0.3, lambda: other.w3.provider.make_request("evm_mine", []))  # type: ignore[arg-type]
    timer.start()
    assert chain.wait_for_block(10.0)
    assert 0.25 < time.monotonic() - t < 5.0
    timer.join()
    other.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert chain.wait_for_block(0.0)  # a block added while the caller was busy is not missed
    stop = threading.Event()
    stop.set()
    assert not chain.wait_for_block(10.0, stop)
    requests = chain.requests
    assert requests["eth_newBlockFilter"] == 1 and requests["eth_getFilterChanges"] >= 3
