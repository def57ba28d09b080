"""Contract calls and events coded from the ABI read once: each function's selector and types, each event's topic.

web3's contract functions find the function called by deriving the 4-byte
selector of every function in the ABI (a keccak each) on every call, view or
transaction, and checksum every address they touch (another keccak). With ten
peers stepping in one process that was a third of the process's CPU (measured
with py-spy on `bench.overhead`). Here each function's selector and types are
derived once per ABI; arguments are encoded and results decoded with eth_abi,
as web3 does, and addresses are checksummed through a cache.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode
from eth_abi.codec import ABICodec
from eth_abi.grammar import ABIType, BasicType, TupleType, parse
from eth_utils import keccak, to_checksum_address
from eth_utils.abi import function_abi_to_4byte_selector, get_abi_input_types, get_abi_output_types
from web3._utils.abi import build_strict_registry

__all__ = ["Event", "Function", "checksum", "events", "functions"]

# As web3 encodes arguments: a bytes32 given fewer bytes, or a value out of its type's range, is refused.
_STRICT = ABICodec(build_strict_registry())


@functools.lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """The EIP-55 form of `address` (a federation has few addresses: each is hashed once)."""
    return str(to_checksum_address(address))


def _to_abi(t: ABIType, value: Any) -> Any:
    """An argument as eth_abi encodes it without hashing: an address as its 20 bytes."""
    if t.is_array:
        return [_to_abi(t.item_type, v) for v in value]
    if isinstance(t, TupleType):
        return tuple(_to_abi(c, v) for c, v in zip(t.components, value, strict=True))
    if isinstance(t, BasicType) and t.base == "address" and isinstance(value, str):
        raw = bytes.fromhex(value.removeprefix("0x"))
        if len(raw) != 20:
            raise ValueError(f"not an address: {value!r}")
        return raw
    return value


def _from_abi(t: ABIType, value: Any) -> Any:
    """A decoded value as web3 returns it: addresses checksummed."""
    if t.is_array:
        return tuple(_from_abi(t.item_type, v) for v in value)
    if isinstance(t, TupleType):
        return tuple(_from_abi(c, v) for c, v in zip(t.components, value, strict=True))
    if isinstance(t, BasicType) and t.base == "address":
        return checksum(value)
    return value


@dataclass(frozen=True)
class Function:
    """One contract function: its selector and its input and output types."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self, args: Sequence[Any]) -> bytes:
        """The calldata calling this function with `args`."""
        if len(args) != len(self.inputs):
            raise TypeError(f"{self.name} takes {len(self.inputs)} arguments, got {len(args)}")
        values = [_to_abi(parse(t), a) for t, a in zip(self.inputs, args, strict=True)]
        return self.selector + _STRICT.encode(list(self.inputs), values)

    def decode(self, data: bytes) -> Any:
        """The call's result: its one value, or a tuple of them."""
        values = decode(list(self.outputs), data)
        out = tuple(_from_abi(parse(t), v) for t, v in zip(self.outputs, values, strict=True))
        return out[0] if len(out) == 1 else out


def functions(abi: list[dict[str, Any]]) -> dict[str, Function]:
    """Every function of `abi` by name (an overloaded name is left out: call it through web3)."""
    return dict(_functions(json.dumps(abi, sort_keys=True)))


@functools.lru_cache(maxsize=16)
def _functions(abi_json: str) -> tuple[tuple[str, Function], ...]:
    entries = [e for e in json.loads(abi_json) if e.get("type") == "function"]
    names = [e["name"] for e in entries]
    return tuple(
        (
            e["name"],
            Function(
                e["name"],
                function_abi_to_4byte_selector(e),
                tuple(get_abi_input_types(e)),
                tuple(get_abi_output_types(e)),
            ),
        )
        for e in entries
        if names.count(e["name"]) == 1
    )


@dataclass(frozen=True)
class Event:
    """One contract event: its topic and its indexed (static) and data inputs, by name and type."""

    name: str
    topic: bytes
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]

    def decode(self, log: Mapping[str, Any]) -> dict[str, Any]:
        """The event's arguments from a log whose first topic is this event's."""
        topics = log["topics"][1:]
        if len(topics) != len(self.indexed):
            raise ValueError(f"{self.name}: expected {len(self.indexed)} indexed topics, got {len(topics)}")
        args: dict[str, Any] = {}
        for (name, t), topic in zip(self.indexed, topics, strict=True):
            args[name] = _from_abi(parse(t), decode([t], bytes(topic))[0])
        values = decode([t for _, t in self.data], bytes(log["data"]))
        for (name, t), value in zip(self.data, values, strict=True):
            args[name] = _from_abi(parse(t), value)
        return args


def events(abi: list[dict[str, Any]]) -> dict[str, Event]:
    """Every event of `abi` by name (indexed inputs of dynamic type, logged as hashes, are not supported)."""
    return dict(_events(json.dumps(abi, sort_keys=True)))


@functools.lru_cache(maxsize=16)
def _events(abi_json: str) -> tuple[tuple[str, Event], ...]:
    out = []
    for e in json.loads(abi_json):
        if e.get("type") != "event" or e.get("anonymous"):
            continue
        types = get_abi_input_types(e)
        inputs = [(i["name"], t, bool(i.get("indexed"))) for i, t in zip(e["inputs"], types, strict=True)]
        if any(ix and parse(t).is_dynamic for _, t, ix in inputs):
            continue
        indexed = tuple((n, t) for n, t, ix in inputs if ix)
        data = tuple((n, t) for n, t, ix in inputs if not ix)
        signature = f"{e['name']}({','.join(types)})"
        out.append((e["name"], Event(e["name"], keccak(text=signature), indexed, data)))
    return tuple(out)
