"""The chain backends: the embedded eth-tester chain, or any JSON-RPC endpoint.

This is the one swap point for the chain. Both give a `Chain`: a Web3 instance
plus the little that differs between them (moving time forward, pre-funded
development accounts). Everything above talks to `Chain.w3` only.
"""

from __future__ import annotations

import ast
import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, cast

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.error_formatters_utils import raise_contract_logic_error_on_revert
from web3.exceptions import Web3RPCError
from web3.providers import HTTPProvider
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import BlockIdentifier, LogReceipt, RPCEndpoint, RPCResponse, Wei

from .abi import checksum
from .errors import ChainUnreachable, LedgerError, WrongChain
from .transport import HttpTransport, proxied

__all__ = ["Chain", "connect", "embedded_chain", "network_errors"]

# anvil's default mnemonic ("test test ... junk") yields these well-known keys;
# they hold test ether on every anvil and are public, so nothing secret leaks.
TX_GAS_CAP = 2**24  # EIP-7825 (Osaka): no transaction may ask for more gas

ANVIL_DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


# What a dropped connection, a refused port or a timeout looks like from web3's HTTP provider.
_NETWORK_ERRORS = (requests.exceptions.RequestException, ConnectionError, TimeoutError)


@contextmanager
def network_errors(what: str = "the chain") -> Iterator[None]:
    """Turn a network failure inside the block into `ChainUnreachable` (one place for every call)."""
    try:
        yield
    except _NETWORK_ERRORS as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) and isinstance(exc, ConnectionError) else ""
        raise ChainUnreachable(
            f"{what} did not answer: {type(exc).__name__}" + (f" ({reason})" if reason else "")
        ) from exc


@dataclass
class _LogCache:
    """One address's logs from block `start` up to (not including) block `next`."""

    start: int
    next: int
    logs: list[LogReceipt] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)  # each log's block number, for bisecting


@dataclass
class Chain:
    """A connected chain. `kind` is "embedded" (eth-tester, in process) or "rpc"."""

    w3: Web3
    kind: Literal["embedded", "rpc"]
    url: str | None = None
    tester: EthereumTester | None = field(default=None, repr=False)
    _logs: dict[str, _LogCache] = field(default_factory=dict, repr=False)
    _pinned: int | None = field(default=None, repr=False)
    _views: tuple[Any, dict[Any, Any]] = field(default=(None, {}), repr=False)
    _blocks: _BlockWatch | None = field(default=None, repr=False)

    @property
    def requests(self) -> Counter[str]:
        """The JSON-RPC requests made so far, by method (eth-tester's counted as a node's would be)."""
        counted = getattr(self.w3.provider, "requests", None)
        return counted if isinstance(counted, Counter) else Counter()

    def _head(self) -> tuple[int, Any] | None:
        """The block views read at, and what identifies its state: the pinned block, else the
        embedded chain's latest (an attribute read; its hash tells a block apart from another at
        the same height). None over JSON-RPC outside a pin: asking would cost a request."""
        if self._pinned is not None:
            return self._pinned, self._pinned
        if self.tester is not None:
            header = self.tester.backend.chain.get_canonical_head()
            return int(header.block_number), header.hash
        return None

    def view(self, key: Any, read: Callable[[int | str], Any]) -> Any:
        """`read(block)` for the current block, remembered while the chain stays at that block.

        Every view is a pure function of the state at one block, so asking it again at the
        same block (another peer of a simulation, another part of the same step) is answered
        from memory. `key` names the view (contract, function, arguments). Over JSON-RPC
        outside a step's pin (`pinned`), a view is read at "latest" and not remembered.
        """
        head = self._head()
        if head is None:
            return read("latest")
        number, state = head
        if self._views[0] != state:
            self._views = (state, {})
        cache = self._views[1]
        if key not in cache:
            cache[key] = read(number)
        return cache[key]

    def wait_for_block(self, timeout: float, stop: threading.Event | None = None, every: float = 0.05) -> bool:
        """Wait until a block is added (True), or `timeout` passes or `stop` is set (False).

        Over JSON-RPC through a block filter (`eth_newBlockFilter`, then `eth_getFilterChanges`
        every `every` seconds: a small answer, no state read), or by the block number where
        the node offers no filters. The first call only installs the filter, and a block added
        between two calls is reported by the second: nothing is missed while the caller works.
        The embedded chain adds blocks only for this process's own transactions: it waits.
        """
        stop = stop or threading.Event()
        if self.tester is not None:
            stop.wait(timeout)
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                with network_errors(self.url or "the chain"):
                    if self._blocks is None:
                        self._blocks = _BlockWatch(self)
                    elif self._blocks.added():
                        return True
            except Web3RPCError:  # the node refused (rate limit, a method turned off): just wait
                self._blocks = None
                stop.wait(max(0.0, deadline - time.monotonic()))
                return False
            left = deadline - time.monotonic()
            if left <= 0 or stop.wait(min(every, left)):
                return False

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Read every view inside at one block (asked for once), and move it on past a transaction sent inside."""
        if self.tester is not None or self._pinned is not None:  # the embedded head costs nothing to read
            yield
            return
        self._pinned = self.block_number()
        try:
            yield
        finally:
            self._pinned = None

    def sent(self, block: int) -> None:
        """A transaction of ours landed in `block`: pinned views move on to it."""
        if self._pinned is not None:
            self._pinned = max(self._pinned, block)

    def logs(self, address: str, from_block: int = 0) -> list[LogReceipt]:
        """Every log `address` emitted at or after `from_block`, in chain order.

        Read incrementally: each block is asked for once, then kept, so a round's log
        reads cost what the new blocks hold, not what the whole chain holds; every
        client of this `Chain` (all the peers of a simulation) shares what was read.
        Blocks are taken as final once read, as on anvil, geth --dev and the
        proof-of-authority chains a consortium runs; a chain that went back (restarted
        without its state) is noticed and read afresh.
        """
        cache = self._logs.get(address)
        head = self._head()  # a step's pinned block: its logs and its views agree
        latest = head[0] if head is not None else self.block_number()
        if cache is None or latest + 1 < cache.next or from_block < cache.start:
            cache = self._logs[address] = _LogCache(start=from_block, next=from_block)
        if cache.next <= latest:
            new = self._get_logs(address, cache.next, latest)
            cache.logs.extend(new)
            cache.blocks.extend(int(lg["blockNumber"]) for lg in new)
            cache.next = latest + 1
        return cache.logs[bisect.bisect_left(cache.blocks, from_block) :]

    def _get_logs(self, address: str, first: int, last: int) -> list[LogReceipt]:
        """`address`'s logs in blocks `first`..`last`. Over JSON-RPC read straight from the provider and
        formatted here (web3's result formatters checksum every log's address with a keccak)."""
        if self.tester is not None:
            return list(
                self.w3.eth.get_logs(
                    {"address": Web3.to_checksum_address(address), "fromBlock": first, "toBlock": last}
                )
            )
        raw = self._rpc("eth_getLogs", [{"address": address, "fromBlock": hex(first), "toBlock": hex(last)}])
        return [
            cast(
                LogReceipt,
                {
                    "address": checksum(lg["address"]),
                    "topics": [HexBytes(t) for t in lg["topics"]],
                    "data": HexBytes(lg["data"]),
                    "blockNumber": int(lg["blockNumber"], 16),
                    "blockHash": HexBytes(lg["blockHash"]),
                    "transactionHash": HexBytes(lg["transactionHash"]),
                    "transactionIndex": int(lg["transactionIndex"], 16),
                    "logIndex": int(lg["logIndex"], 16),
                    "removed": bool(lg.get("removed", False)),
                },
            )
            for lg in raw
        ]

    @cached_property
    def chain_id(self) -> int:
        """The chain id (read once: `connect` checked it, and every transaction is signed for it)."""
        return int(self.w3.eth.chain_id)

    @cached_property
    def block_gas_limit(self) -> int:
        """The chain's block gas limit (read once: it moves slowly if at all)."""
        return int(self.w3.eth.get_block("latest")["gasLimit"])

    @property
    def tx_gas_cap(self) -> int:
        """The most gas one transaction of ours asks for: half a block, and never above 2^24, the cap
        on a transaction's gas since Osaka (EIP-7825; geth refuses more, whatever the block's limit)."""
        return min(self.block_gas_limit // 2, TX_GAS_CAP)

    def block_number(self) -> int:
        """The latest block's number."""
        with network_errors(self.url or "the chain"):
            if self.tester is not None:
                return int(self.w3.eth.block_number)
            return int(self._rpc("eth_blockNumber", []), 16)

    def call(self, to: str, data: bytes, block: int | str) -> bytes:
        """`eth_call` of `data` on `to` at `block`; a revert raises web3's `ContractLogicError`.

        Over JSON-RPC the request goes to the provider as it is: web3's request and result
        formatters (which checksum `to` with a keccak and walk the result) cost three times
        the call itself, and views are most of a peer's calls.
        """
        if self.tester is not None:
            return bytes(self.w3.eth.call({"to": to, "data": data}, cast(BlockIdentifier, block)))
        at = block if isinstance(block, str) else hex(block)
        result = self._rpc("eth_call", [{"to": to, "data": "0x" + data.hex()}, at])
        return bytes.fromhex(result.removeprefix("0x"))

    def _rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC request straight to the provider: its result, or the revert / RPC error raised."""
        response = self.w3.provider.make_request(cast(RPCEndpoint, method), params)
        error = response.get("error")
        if error is not None:
            if method == "eth_call":
                raise_contract_logic_error_on_revert(response)
            raise Web3RPCError(str(error), rpc_response=response)
        return response["result"]

    def gas_used_in_block(self, number: int) -> int:
        """The gas block `number`'s transactions used (one transaction's, on a chain that mines one per block)."""
        return int(self.w3.eth.get_block(number)["gasUsed"])

    def now(self) -> int:
        """The latest block's timestamp (a node that does not answer: `ChainUnreachable`, as every read)."""
        with network_errors(self.url or "the chain"):
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move chain time forward by `seconds` and mine a block (development chains only)."""
        if self.tester is not None:
            self.tester.time_travel(self.now() + seconds)
            return
        try:
            self._rpc("evm_increaseTime", [seconds])
        except Web3RPCError as exc:  # geth --dev and real chains: their clock is the wall clock
            raise LedgerError(f"{self.url} cannot move its clock (evm_increaseTime: {exc})") from exc
        self._rpc("evm_mine", [])

    def fund(self, address: str, wei: int) -> None:
        """Send `wei` of ether to `address` from a pre-funded development account."""
        if self.tester is not None:
            sender = self.tester.get_accounts()[0]
            tx_hash = self.w3.eth.send_transaction({"from": sender, "to": address, "value": Wei(wei)})
        elif (signer := self._node_signer) is not None:  # geth --dev: its node signs for it
            tx_hash = self._rpc("eth_sendTransaction", [{"from": signer, "to": address, "value": hex(wei)}])
        else:
            dev: LocalAccount = Account.from_key(ANVIL_DEV_KEYS[0])
            tx: dict[str, Any] = {
                "to": Web3.to_checksum_address(address),
                "value": wei,
                "gas": 21_000,
                "nonce": self.w3.eth.get_transaction_count(dev.address, "pending"),
                "chainId": self.chain_id,
                "maxFeePerGas": 2 * int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0)) + 10**9,
                "maxPriorityFeePerGas": 10**9,
            }
            tx_hash = self.w3.eth.send_raw_transaction(dev.sign_transaction(tx).raw_transaction)
        self.w3.eth.wait_for_transaction_receipt(tx_hash)

    @cached_property
    def _node_signer(self) -> str | None:
        """geth --dev's developer account, which its node signs for: the first account the node holds,
        unless it is anvil's first key (anvil's accounts are funded by signing here). Asked once."""
        try:
            accounts = [str(a) for a in self._rpc("eth_accounts", [])]
        except Web3RPCError:
            return None
        anvil = Account.from_key(ANVIL_DEV_KEYS[0]).address.lower()
        return accounts[0] if accounts and accounts[0].lower() != anvil else None


class _BlockWatch:
    """Whether a block was added since the last look: a block filter, or the block number where the
    node offers none or stops answering one (a node restarted, or load-balanced over several: no
    filter is made again, so a failing filter never turns waiting into stepping without a pause)."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.number = chain.block_number()
        self.filter: str | None = None
        try:
            self.filter = str(chain._rpc("eth_newBlockFilter", []))
        except Web3RPCError:  # not offered (or not allowed): compare block numbers
            self.filter = None

    def added(self) -> bool:
        if self.filter is not None:
            try:
                return bool(self.chain._rpc("eth_getFilterChanges", [self.filter]))
            except Web3RPCError:  # the node forgot the filter: block numbers from now on
                self.filter = None
        number = self.chain.block_number()
        added, self.number = number != self.number, number
        return added


class _HTTPProvider(HTTPProvider):
    """web3's HTTP provider on kept-alive `http.client` connections (`HttpTransport`), counting the
    requests it makes (by method)."""

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(url, request_kwargs={"timeout": timeout})
        self.requests: Counter[str] = Counter()
        self._transport = None if proxied(url) else HttpTransport(url, timeout)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        self.requests[method] += 1
        return super().make_request(method, params)

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        if self._transport is None:  # behind a proxy: requests knows how
            return super()._make_request(method, request_data)
        return self._transport.post(request_data)


class _TesterProvider(EthereumTesterProvider):
    """eth-tester as a JSON-RPC node would answer: a revert is an error carrying its data.

    web3's own eth-tester provider raises instead, and decodes any revert whose
    arguments look like one string as Error(string), losing a custom error's
    selector. Answering like a node keeps one revert path for both backends.
    """

    requests: Counter[str]

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        self.requests[method] += 1
        namespace, _, endpoint = method.partition("_")
        delegator = (self.api_endpoints or {}).get(namespace, {}).get(endpoint)
        if delegator is None:
            return super().make_request(method, params)
        request_id = self._current_request_id
        self._current_request_id += 1
        try:
            result = delegator(self.ethereum_tester, params)
        except TransactionFailed as exc:
            raw = exc.args[0] if exc.args else b""
            raw = raw.args[0] if isinstance(raw, Exception) and raw.args else raw
            if isinstance(raw, str) and raw.startswith(("b'", 'b"')):  # eth_call gives the bytes' repr
                raw = ast.literal_eval(raw)  # eth-tester's own message, never outside input
            error: dict[str, Any] = {"code": 3, "message": "execution reverted"}
            if isinstance(raw, bytes):
                error["data"] = "0x" + raw.hex()
            else:
                error["message"] = f"execution reverted: {raw}"
            return cast(RPCResponse, {"id": request_id, "jsonrpc": "2.0", "error": error})
        except NotImplementedError:
            return super().make_request(method, params)
        return cast(RPCResponse, {"id": request_id, "jsonrpc": "2.0", "result": result})


def embedded_chain() -> Chain:
    """A fresh in-process chain (eth-tester on py-evm): no daemon, instant blocks."""
    tester = EthereumTester(PyEVMBackend())
    provider = _TesterProvider(tester)
    provider.requests = Counter()
    w3 = _lean(Web3(provider))
    w3.eth.default_account = tester.get_accounts()[0]  # else every call asks eth_accounts whom it is from
    return Chain(w3=w3, kind="embedded", tester=tester)


def _lean(w3: Web3) -> Web3:
    """Without the middleware that costs a request per call and checks nothing we need.

    `validation` asks eth_chainId for every call and transaction to compare with the
    transaction's own (ours are signed for the chain id `connect` checked); ENS name
    resolution has no names to resolve here.
    """
    for name in ("validation", "ens_name_to_address"):
        w3.middleware_onion.remove(name)
    return w3


def connect(url: str, expected_chain_id: int | None = None, timeout: float = 10.0) -> Chain:
    """Connect to a JSON-RPC endpoint and check it answers (and is the expected chain)."""
    if not url.startswith(("http://", "https://")):
        raise ChainUnreachable(f"RPC URL must start with http:// or https://, got {url!r}")
    w3 = _lean(Web3(_HTTPProvider(url, timeout)))
    try:
        chain_id = int(w3.eth.chain_id)
    except (requests.exceptions.RequestException, OSError) as exc:
        raise ChainUnreachable(f"no JSON-RPC answer at {url} ({type(exc).__name__})") from exc
    except Exception as exc:  # a non-JSON-RPC server answers with something else
        raise ChainUnreachable(f"{url} is not a JSON-RPC endpoint ({exc})") from exc
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise WrongChain(f"{url} serves chain id {chain_id}, expected {expected_chain_id}")
    return Chain(w3=w3, kind="rpc", url=url)
