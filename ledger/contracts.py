"""Committed contract artifacts, and turning revert data into named exceptions."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, is_address, to_checksum_address

from .errors import ContractRevert, DeploymentError, revert_class
from .types import Phase

__all__ = ["ARTIFACTS_DIR", "artifact", "decode_revert"]

# The compiled contracts ship inside the package (package data): deploying needs no compiler.
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"

# Errors raised from inside OpenZeppelin code that Federation calls.
_OZ_ERRORS: dict[str, tuple[list[tuple[str, str]], str]] = {
    "ReentrancyGuardReentrantCall": ([], "A call re-entered the contract while it was paying out."),
    "SafeERC20FailedOperation": ([("token", "address")], "The token `token` refused a transfer."),
    "SafeCastOverflowedUintDowncast": (
        [("bits", "uint8"), ("value", "uint256")],
        "The amount `value` does not fit the contract's `bits`-bit field.",
    ),
    "ERC20InsufficientBalance": (
        [("sender", "address"), ("balance", "uint256"), ("needed", "uint256")],
        "`sender` holds `balance` tokens but `needed` are needed.",
    ),
    "ERC20InsufficientAllowance": (
        [("spender", "address"), ("allowance", "uint256"), ("needed", "uint256")],
        "`spender` may move `allowance` tokens but `needed` are needed (approve first).",
    ),
}


@cache
def artifact(name: str) -> dict[str, Any]:
    """The committed artifact (ABI, bytecode, NatSpec) of contract `name`."""
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeploymentError(f"contract artifact {path} is missing or unreadable: run `make artifacts`") from exc
    return data


@cache
def _error_table() -> dict[bytes, tuple[str, list[tuple[str, str]], str]]:
    table: dict[bytes, tuple[str, list[tuple[str, str]], str]] = {}
    for name in ("Federation", "RewardToken", "VerticalTask"):
        art = artifact(name)
        notices = art.get("userdoc", {}).get("errors", {})
        for item in art["abi"]:
            if item["type"] != "error":
                continue
            inputs = [(i["name"], i["type"]) for i in item["inputs"]]
            signature = f"{item['name']}({','.join(t for _, t in inputs)})"
            notice = notices.get(signature, [{}])[0].get("notice", "")
            table[function_signature_to_4byte_selector(signature)] = (item["name"], inputs, notice)
    for err_name, (inputs, notice) in _OZ_ERRORS.items():
        signature = f"{err_name}({','.join(t for _, t in inputs)})"
        table.setdefault(function_signature_to_4byte_selector(signature), (err_name, inputs, notice))
    return table


def _render(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and is_address(value):
        return str(to_checksum_address(value))
    return str(value)


def decode_revert(data: str | bytes | None) -> ContractRevert:
    """A named ContractRevert for revert `data` (selector + ABI-encoded arguments)."""
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else (data or b"")
    entry = _error_table().get(raw[:4])
    if entry is None:
        return ContractRevert(f"the contract reverted (data 0x{raw.hex() or ''})")
    name, inputs, notice = entry
    values = abi_decode([t for _, t in inputs], raw[4:]) if inputs else ()
    args = {arg: value for (arg, _), value in zip(inputs, values, strict=True)}
    if name == "RoundNotInPhase":
        args = {**args, "expected": Phase(args["expected"]).name, "actual": Phase(args["actual"]).name}
    text = re.sub(r"`(\w+)`", lambda m: _render(args.get(m.group(1), m.group(1))), notice) if notice else name
    return revert_class(name)(f"{name}: {text}", args)
