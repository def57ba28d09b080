"""The committed artifacts match the sources, compiled by the real Solidity compiler."""

from __future__ import annotations

import json

from ledger.compile import ARTIFACTS_DIR, CONTRACTS, compile_sources, stale_artifacts


def test_committed_artifacts_are_what_the_sources_compile_to() -> None:
    assert stale_artifacts() == [], "run `make artifacts` and commit contracts/artifacts/"
    fresh = compile_sources()
    for name in CONTRACTS:
        committed = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        assert committed["bytecode"] == fresh[name]["bytecode"], f"{name}: stale bytecode"
        assert committed["abi"] == fresh[name]["abi"], f"{name}: stale ABI"


def test_every_custom_error_and_event_is_declared_in_the_interface() -> None:
    fed = compile_sources()["Federation"]
    errors = {item["name"] for item in fed["abi"] if item["type"] == "error"}
    events = {item["name"] for item in fed["abi"] if item["type"] == "event"}
    interface = (ARTIFACTS_DIR.parent / "IFederation.sol").read_text()
    for name in errors - {"ReentrancyGuardReentrantCall", "SafeERC20FailedOperation"}:
        assert f"error {name}(" in interface, name
    for name in events:
        assert f"event {name}(" in interface, name
    notices = fed["userdoc"].get("errors", {})
    assert all(sig.split("(")[0] in errors for sig in notices)
    assert len(notices) >= len(errors) - 2, "every custom error has a NatSpec @notice"
