"""Slither finds nothing on contracts/ that contracts/slither-triage.toml does not explain.

`make lint` runs the same check; here it also runs in the suite. The other tests feed the
script's comparison synthetic Slither reports, so they need neither Slither nor a compiler.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slither_check.py"
FEDERATION = ROOT / "contracts" / "Federation.sol"
OZ_GUARD = ROOT / "scripts/toolchain/node_modules/@openzeppelin/contracts/utils/ReentrancyGuard.sol"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slither_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


sc = _load_script()


def _element(kind: str, name: str, file: Path, parent: dict[str, Any] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": kind, "name": name, "source_mapping": {"filename_absolute": str(file)}}
    if parent is not None:
        element["type_specific_fields"] = {"parent": parent}
    return element


def _result(check: str, *elements: dict[str, Any]) -> dict[str, Any]:
    return {
        "check": check,
        "impact": "High",
        "confidence": "Medium",
        "description": f"{check} here",
        "elements": list(elements),
    }


def _report(*results: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "error": None, "results": {"detectors": list(results)}}


FED = _element("contract", "Federation", FEDERATION)
CLAIM = _element("function", "claim", FEDERATION, FED)


def test_slither_finds_nothing_the_triage_does_not_explain() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_findings_are_placed_by_contract_and_member_and_only_ours_count() -> None:
    guard = _element("contract", "ReentrancyGuard", OZ_GUARD)
    settle = _element("function", "_settle", FEDERATION, FED)
    report = _report(
        _result("reentrancy-eth", _element("node", "token.safeTransfer(...)", FEDERATION, CLAIM), CLAIM),
        _result("uninitialized-local", _element("variable", "totalScore", FEDERATION, settle)),
        _result(
            "shadowing-state",
            _element("variable", "_status", FEDERATION, FED),
            _element("variable", "_status", OZ_GUARD, guard),
        ),
        _result("pragma", _element("pragma", "^0.8.24", FEDERATION)),
        _result("dead-code", _element("function", "_reentrancyGuardEntered", OZ_GUARD, guard)),  # OpenZeppelin's
    )
    placed = {(f.detector, f.where) for f in sc.findings_from_slither(report)}
    assert placed == {
        ("reentrancy-eth", "Federation.claim"),
        ("uninitialized-local", "Federation._settle.totalScore"),
        ("shadowing-state", "Federation._status"),
        ("pragma", "contracts/Federation.sol:^0.8.24"),
    }


def test_a_finding_not_in_the_triage_fails_and_so_does_a_stale_entry() -> None:
    accepted = sc.load_triage()
    assert accepted, "the committed triage file parses and is not empty"
    new = sc.Finding("reentrancy-eth", "Federation.claim")
    verdict = sc.compare([new], accepted)
    assert not verdict.ok
    assert verdict.unexplained == [new]
    assert verdict.stale == accepted  # none of the accepted findings is in this synthetic list
    kept = sc.compare([sc.Finding(a.detector, a.where) for a in accepted], accepted)
    assert kept.ok


def test_the_script_exits_non_zero_and_names_the_unexplained_finding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    triage = tmp_path / "triage.toml"
    triage.write_text('[[accepted]]\ndetector = "timestamp"\nwhere = "Federation._afterTimeouts"\nreason = "windows"\n')
    monkeypatch.setattr(sc, "TRIAGE_FILE", triage)
    timestamp = _result("timestamp", _element("function", "_afterTimeouts", FEDERATION, FED))
    monkeypatch.setattr(sc, "run_slither", lambda: _report(timestamp))
    assert sc.main([]) == 0
    monkeypatch.setattr(sc, "run_slither", lambda: _report(timestamp, _result("reentrancy-eth", CLAIM)))
    assert sc.main([]) == 1
    assert "reentrancy-eth at Federation.claim" in capsys.readouterr().err
    monkeypatch.setattr(sc, "run_slither", _report)
    assert sc.main([]) == 1
    assert "timestamp at Federation._afterTimeouts" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    [
        '[[accepted]]\ndetector = "timestamp"\nwhere = "Federation._afterTimeouts"\n',  # no reason
        '[[accepted]]\ndetector = "timestamp"\nwhere = "F.f"\nreason = " "\n',  # blank reason
        '[[accepted]]\ndetector = "timestamp"\nwhere = "F.f"\nreason = "x"\nline = 440\n',  # lines do not place
        '[[accepted]]\ndetector = "t"\nwhere = "F.f"\nreason = "x"\n' * 2,  # the same place twice
    ],
)
def test_a_malformed_triage_entry_is_rejected(tmp_path: Path, text: str) -> None:
    triage = tmp_path / "triage.toml"
    triage.write_text(text)
    with pytest.raises(sc.CheckError):
        sc.load_triage(triage)
