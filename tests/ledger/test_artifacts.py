"""The committed artifacts match the sources, compiled by the real Solidity compiler."""

from __future__ import annotations

import json
import re
from enum import IntEnum
from typing import Any

import pytest

from ledger.compile import ARTIFACTS_DIR, CONTRACTS, CONTRACTS_DIR, compile_sources, stale_artifacts
from ledger.types import FailReason, MemberStatus, Phase


def test_committed_artifacts_are_what_the_sources_compile_to() -> None:
    assert stale_artifacts() == [], "run `make artifacts` and commit ledger/artifacts/"
    fresh = compile_sources()
    for name in CONTRACTS:
        committed = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        assert committed["bytecode"] == fresh[name]["bytecode"], f"{name}: stale bytecode"
        assert committed["abi"] == fresh[name]["abi"], f"{name}: stale ABI"


def test_every_custom_error_and_event_is_declared_in_the_interface() -> None:
    fed = compile_sources()["Federation"]
    errors = {item["name"] for item in fed["abi"] if item["type"] == "error"}
    events = {item["name"] for item in fed["abi"] if item["type"] == "event"}
    interface = (CONTRACTS_DIR / "IFederation.sol").read_text()
    for name in errors - {"ReentrancyGuardReentrantCall", "SafeERC20FailedOperation", "SafeCastOverflowedUintDowncast"}:
        assert f"error {name}(" in interface, name
    for name in events:
        assert f"event {name}(" in interface, name
    notices = fed["userdoc"].get("errors", {})
    assert all(sig.split("(")[0] in errors for sig in notices)
    assert len(notices) >= len(errors) - 3, "every custom error has a NatSpec @notice"  # three are OpenZeppelin's


def _functions(abi: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (f["name"], tuple(i["type"] for i in f["inputs"]), tuple(o["type"] for o in f["outputs"]), f["stateMutability"])
        for f in abi
        if f["type"] == "function"
    }


def test_every_external_function_and_view_is_declared_in_the_interface() -> None:
    compiled = compile_sources()
    assert _functions(compiled["Federation"]["abi"]) == _functions(compiled["IFederation"]["abi"])


@pytest.mark.parametrize("enum", [Phase, FailReason, MemberStatus])
def test_the_python_enums_mirror_the_interface(enum: type[IntEnum]) -> None:
    interface = (CONTRACTS_DIR / "IFederation.sol").read_text()
    body = re.search(rf"enum {enum.__name__} {{([^}}]*)}}", interface)
    assert body, f"IFederation declares no enum {enum.__name__}"
    solidity = [re.sub(r"(?<!^)(?=[A-Z])", "_", m.strip()).upper() for m in body.group(1).split(",")]
    assert [(m.name, m.value) for m in enum] == [(name, i) for i, name in enumerate(solidity)]
