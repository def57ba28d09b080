"""The lean call path (`ledger.abi`, `ledger.transport`, `Chain.call`, `Chain.wait_for_block`) against
web3's own: the same calldata, the same decoded views and events, on both chains; what `requests`
did for a node's URL (credentials, proxies) kept; a kept-alive connection the server closed is not
reused, and nothing is sent twice; a new block wakes a waiting peer, with or without a filter."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from web3.exceptions import Web3RPCError

from ledger.abi import checksum
from ledger.chain import Chain, connect
from ledger.errors import ChainUnreachable
from ledger.transport import HttpTransport, proxied
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


Handler = Callable[[socket.socket, bytes], bool]  # answer one request on a connection; False closes it


def _read_request(conn: socket.socket) -> bytes | None:
    """One whole HTTP request (headers and a Content-Length body), or None when the client is gone."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
    except OSError:
        return None
    return head + b"\r\n\r\n" + body


@contextmanager
def stub_server(handle: Handler) -> Iterator[tuple[str, list[bytes]]]:
    """A local HTTP stub: each accepted connection's requests go to `handle` until it returns False.
    Yields its URL and every request it read (raw)."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2.0)
                while (request := _read_request(conn)) is not None:
                    seen.append(request)
                    if not handle(conn, request):
                        break

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join()
        server.close()


_BODY = b'{"jsonrpc":"2.0","id":0,"result":"0x2a"}'
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
_CALL = b'{"jsonrpc":"2.0","id":0,"method":"eth_chainId","params":[]}'


def _answer_then_close(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(_ANSWER)
    return False  # closed after the answer, without saying so (as a node closing an idle connection)


def test_a_kept_alive_connection_the_server_closed_is_replaced_before_it_is_used() -> None:
    with stub_server(_answer_then_close) as (url, seen):
        transport = HttpTransport(url, timeout=5.0)
        for _ in range(3):
            assert b'"0x2a"' in transport.post(_CALL)
            time.sleep(0.1)
        assert len(seen) == 3  # each on a fresh connection, none lost


def test_a_request_that_fails_once_sent_is_never_sent_again() -> None:
    answered: list[socket.socket] = []

    def answer_once(conn: socket.socket, request: bytes) -> bool:
        if conn in answered:
            return False  # the second request on the connection: read, then closed unanswered
        answered.append(conn)
        conn.sendall(_ANSWER)
        return True  # kept alive

    with stub_server(answer_once) as (url, seen):
        transport = HttpTransport(url, timeout=5.0)
        assert b'"0x2a"' in transport.post(_CALL)
        with pytest.raises(ConnectionError):
            transport.post(_CALL)
        time.sleep(0.2)
        assert len(seen) == 2  # not resent on a fresh connection: a signed transaction must not go out twice


def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    def answer(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(_ANSWER)
        return True

    with stub_server(answer) as (url, seen):
        authed = url.replace("http://", "http://alice:s%20cret@")
        assert b'"0x2a"' in HttpTransport(authed, timeout=5.0).post(_CALL)
    token = base64.b64encode(b"alice:s cret").decode()
    assert f"Authorization: Basic {token}".encode() in seen[0]
    assert b"User-Agent: fedchain" in seen[0]


def test_behind_a_proxy_requests_goes_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(_ANSWER)
        return True

    url = "http://10.1.2.3:8545"  # never reached: the proxy answers
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with stub_server(answer) as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        assert proxied(url)
        assert connect(url).chain_id == 42
    assert seen and all(r.startswith(b"POST http://10.1.2.3:8545") for r in seen)  # sent to the proxy
    monkeypatch.setenv("NO_PROXY", "10.1.2.3")
    assert not proxied(url)


@pytest.mark.anvil
def test_a_node_that_drops_the_filter_is_watched_by_block_number(anvil: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    chain: Chain = connect(anvil.url)
    real = chain._rpc

    def no_filters(method: str, params: list[Any]) -> Any:
        if method == "eth_getFilterChanges":
            raise Web3RPCError("filter not found")
        return real(method, params)

    monkeypatch.setattr(chain, "_rpc", no_filters)
    assert not chain.wait_for_block(0.1)  # installs the filter
    assert not chain.wait_for_block(0.3)  # the filter fails: block numbers, and no block yet
    connect(anvil.url).w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert chain.wait_for_block(5.0)
    assert chain.requests["eth_newBlockFilter"] == 1  # not made again and again


@pytest.mark.anvil
def test_a_node_gone_mid_run_is_chain_unreachable_for_the_block_clock_too(tmp_path: Any) -> None:
    """`Chain.now()` (a vote's fetch deadline, the vertical stages' windows) went through web3 unmapped:
    a peer partitioned from its chain died on a raw timeout instead of waiting the outage out."""
    from ledger.devnet import start_anvil

    node = start_anvil(log_path=tmp_path / "anvil.log")
    chain = connect(node.url)
    assert chain.now() > 0
    node.stop()
    with pytest.raises(ChainUnreachable, match="did not answer"):
        chain.now()
