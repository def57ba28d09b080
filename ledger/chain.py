"""The chain backends: the embedded eth-tester chain, or any JSON-RPC endpoint.

This is the one swap point for the chain. Both give a `Chain`: a Web3 instance
plus the little that differs between them (moving time forward, pre-funded
development accounts). Everything above talks to `Chain.w3` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, cast

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint, RPCResponse, Wei

from .errors import ChainUnreachable, WrongChain

__all__ = ["Chain", "connect", "embedded_chain"]

# anvil's default mnemonic ("test test ... junk") yields these well-known keys;
# they hold test ether on every anvil and are public, so nothing secret leaks.
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


@dataclass
class Chain:
    """A connected chain. `kind` is "embedded" (eth-tester, in process) or "rpc"."""

    w3: Web3
    kind: Literal["embedded", "rpc"]
    url: str | None = None
    tester: EthereumTester | None = field(default=None, repr=False)

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    @cached_property
    def block_gas_limit(self) -> int:
        """The chain's block gas limit (read once: it moves slowly if at all)."""
        return int(self.w3.eth.get_block("latest")["gasLimit"])

    def block_number(self) -> int:
        """The latest block's number."""
        return int(self.w3.eth.block_number)

    def gas_used_in_block(self, number: int) -> int:
        """The gas block `number`'s transactions used (one transaction's, on a chain that mines one per block)."""
        return int(self.w3.eth.get_block(number)["gasUsed"])

    def now(self) -> int:
        """The latest block's timestamp."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move chain time forward by `seconds` and mine a block (development chains only)."""
        if self.tester is not None:
            self.tester.time_travel(self.now() + seconds)
            return
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def fund(self, address: str, wei: int) -> None:
        """Send `wei` of ether to `address` from a pre-funded development account."""
        if self.tester is not None:
            sender = self.tester.get_accounts()[0]
            tx_hash = self.w3.eth.send_transaction({"from": sender, "to": address, "value": Wei(wei)})
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


class _TesterProvider(EthereumTesterProvider):
    """eth-tester as a JSON-RPC node would answer: a revert is an error carrying its data.

    web3's own eth-tester provider raises instead, and decodes any revert whose
    arguments look like one string as Error(string), losing a custom error's
    selector. Answering like a node keeps one revert path for both backends.
    """

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
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
    return Chain(w3=Web3(_TesterProvider(tester)), kind="embedded", tester=tester)


def connect(url: str, expected_chain_id: int | None = None, timeout: float = 10.0) -> Chain:
    """Connect to a JSON-RPC endpoint and check it answers (and is the expected chain)."""
    if not url.startswith(("http://", "https://")):
        raise ChainUnreachable(f"RPC URL must start with http:// or https://, got {url!r}")
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
    try:
        chain_id = int(w3.eth.chain_id)
    except (requests.exceptions.RequestException, OSError) as exc:
        raise ChainUnreachable(f"no JSON-RPC answer at {url} ({type(exc).__name__})") from exc
    except Exception as exc:  # a non-JSON-RPC server answers with something else
        raise ChainUnreachable(f"{url} is not a JSON-RPC endpoint ({exc})") from exc
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise WrongChain(f"{url} serves chain id {chain_id}, expected {expected_chain_id}")
    return Chain(w3=w3, kind="rpc", url=url)
