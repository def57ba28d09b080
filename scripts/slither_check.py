"""Slither over fedchain's contracts, held against the triage file (`make slither`, part of `make lint`).

    .venv/bin/python scripts/slither_check.py

How Slither is fed: this script writes the solc standard-JSON input that `ledger.compile` compiles
(the same sources, optimizer, EVM version and remappings; only the output selection differs, since
Slither needs the AST and source maps) and gives it to Slither with `--compile-force-framework
solc-json`. crytic-compile then runs fedchain's own compiler (`ledger.toolchain.solc_path()`, the
wasm shim) as `solc --standard-json --allow-paths <repo>` with that input on stdin, from the
repository root: the only way of calling solc besides `--version` that the shim answers.

Slither lives in its own venv, `.venv/slither` (`make setup`, pinned in
`scripts/slither-requirements.txt`): slither-analyzer 0.11 requires web3<8, fedchain web3 8.

Every detector runs, informational and optimization ones included. A finding counts when one of
its elements lies in contracts/ (OpenZeppelin's own findings are not ours to fix). Each counted
finding must match an entry of contracts/slither-triage.toml by detector and place, and each entry
must still match a finding, so the file cannot rot. A place is `Contract.member` (a function,
modifier, state variable, event...), `Contract.function.local` for a local variable, or
`file:name` for what lies outside any contract (a pragma): never a line number.

Exit status: 0 when every finding is triaged and every entry used, 1 when not, 2 when Slither or
the compiler could not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `ledger` importable without installing it
    sys.path.insert(0, str(REPO_ROOT))

from ledger.compile import CONTRACTS_DIR, SETTINGS  # noqa: E402
from ledger.toolchain import solc_path  # noqa: E402

__all__ = [
    "TRIAGE_FILE",
    "Accepted",
    "Finding",
    "Verdict",
    "compare",
    "findings_from_slither",
    "load_triage",
    "main",
    "run_slither",
    "slither_input",
    "slither_path",
]

TRIAGE_FILE = CONTRACTS_DIR / "slither-triage.toml"
# What crytic-compile reads back: the AST, ABIs, NatSpec, bytecode and source maps.
OUTPUT_SELECTION = {
    "*": {"*": ["abi", "devdoc", "userdoc", "evm.bytecode", "evm.deployedBytecode"], "": ["ast"]},
}
TIMEOUT_S = 600


class CheckError(Exception):
    """Slither, the compiler or the triage file could not be used."""


@dataclass(frozen=True)
class Finding:
    """One Slither result on our sources: the detector, where it points, and Slither's text."""

    detector: str
    where: str
    impact: str = ""
    confidence: str = ""
    description: str = ""


@dataclass(frozen=True)
class Accepted:
    """One triage entry: a finding reviewed and accepted, and why."""

    detector: str
    where: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    unexplained: list[Finding]
    stale: list[Accepted]

    @property
    def ok(self) -> bool:
        return not self.unexplained and not self.stale


# --- the input and the run ------------------------------------------------------------------------


def slither_input() -> dict[str, Any]:
    """The standard-JSON input `ledger.compile` compiles, with the outputs Slither reads."""
    dropped = set(SETTINGS.get("optimizer", {})) - {"enabled", "runs"}
    if dropped:  # crytic-compile rewrites `optimizer` to {enabled, runs}: anything else would be lost
        raise CheckError(f"optimizer settings crytic-compile would drop: {sorted(dropped)}")
    files = sorted(CONTRACTS_DIR.glob("*.sol"))
    sources = {p.relative_to(REPO_ROOT).as_posix(): {"content": p.read_text()} for p in files}
    settings = {**SETTINGS, "outputSelection": OUTPUT_SELECTION}
    return {"language": "Solidity", "sources": sources, "settings": settings}


def slither_path() -> Path:
    """The slither executable: FEDCHAIN_SLITHER, else the one `make setup` put in .venv/slither."""
    path = Path(os.environ.get("FEDCHAIN_SLITHER") or REPO_ROOT / ".venv" / "slither" / "bin" / "slither")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise CheckError(f"no slither at {path}: run `make setup`")
    return path


def run_slither() -> dict[str, Any]:
    """Run every Slither detector on the contracts; returns Slither's JSON report."""
    solc = solc_path()
    if solc is None:
        raise CheckError("no Solidity compiler: run `make setup`")
    slither = slither_path()
    with tempfile.TemporaryDirectory(prefix="fedchain-slither-") as tmp:
        target = Path(tmp) / "standard-input.json"
        target.write_text(json.dumps(slither_input()))
        cmd = [
            str(slither),
            str(target),
            *("--compile-force-framework", "solc-json"),
            *("--solc", str(solc), "--solc-working-dir", str(REPO_ROOT)),
            *("--json", "-", "--fail-none", "--disable-color"),
        ]
        try:
            proc = subprocess.run(cmd, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CheckError(f"slither did not run: {exc}") from exc
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {}
    if proc.returncode != 0 or not report.get("success"):
        detail = report.get("error") or proc.stderr.strip()[-2000:] or f"exit status {proc.returncode}"
        raise CheckError(f"slither failed: {detail}")
    return report


# --- findings -----------------------------------------------------------------------------------


def _ours(element: Mapping[str, Any]) -> bool:
    absolute = element.get("source_mapping", {}).get("filename_absolute")
    return bool(absolute) and Path(absolute).resolve().is_relative_to(CONTRACTS_DIR)


def _where(element: Mapping[str, Any]) -> str:
    """`Contract.member[.local]`, or `file:name` outside any contract; nodes (statements) count as their function."""
    chain: list[Mapping[str, Any]] = []
    current: Mapping[str, Any] | None = element
    while current:
        if current.get("type") != "node":
            chain.append(current)
        current = current.get("type_specific_fields", {}).get("parent")
    names = [str(e.get("name", "?")) for e in reversed(chain)]
    if chain and chain[-1].get("type") == "contract":
        return ".".join(names)
    file = Path(element.get("source_mapping", {}).get("filename_absolute", "?"))
    shown = file.relative_to(REPO_ROOT).as_posix() if file.is_relative_to(REPO_ROOT) else file.name
    return f"{shown}:{'.'.join(names)}"


def findings_from_slither(report: Mapping[str, Any]) -> list[Finding]:
    """The findings of a Slither JSON report that touch contracts/, placed by their first element there."""
    found = []
    for result in report.get("results", {}).get("detectors", []):
        ours = [e for e in result.get("elements", []) if _ours(e)]
        if not ours:
            continue
        description = " ".join(str(result.get("description", "")).split())
        found.append(
            Finding(
                detector=str(result["check"]),
                where=_where(ours[0]),
                impact=str(result.get("impact", "")),
                confidence=str(result.get("confidence", "")),
                description=description if len(description) <= 300 else description[:297] + "...",
            )
        )
    return sorted(found, key=lambda f: (f.detector, f.where, f.description))


# --- triage -------------------------------------------------------------------------------------


def load_triage(path: Path | None = None) -> list[Accepted]:
    """The `[[accepted]]` entries of the triage file; each needs a detector, a place and a reason."""
    path = path or TRIAGE_FILE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CheckError(f"{path.name}: {exc}") from exc
    if set(data) - {"accepted"}:
        raise CheckError(f"{path.name}: unknown tables {sorted(set(data) - {'accepted'})}")
    entries: list[Accepted] = []
    for i, raw in enumerate(data.get("accepted", []), start=1):
        complete = isinstance(raw, dict) and set(raw) == {"detector", "where", "reason"}
        if not complete or not all(isinstance(v, str) and v.strip() for v in raw.values()):
            raise CheckError(f"{path.name}: entry {i} needs exactly non-empty detector, where and reason")
        entry = Accepted(raw["detector"].strip(), raw["where"].strip(), " ".join(raw["reason"].split()))
        if any((e.detector, e.where) == (entry.detector, entry.where) for e in entries):
            raise CheckError(f"{path.name}: entry {i} repeats {entry.detector} at {entry.where}")
        entries.append(entry)
    return entries


def compare(findings: Iterable[Finding], accepted: Sequence[Accepted]) -> Verdict:
    """Findings no entry accepts, and entries no finding matches (by detector and place)."""
    findings = list(findings)
    keys = {(a.detector, a.where) for a in accepted}
    unexplained = [f for f in findings if (f.detector, f.where) not in keys]
    seen = {(f.detector, f.where) for f in findings}
    stale = [a for a in accepted if (a.detector, a.where) not in seen]
    return Verdict(unexplained, stale)


def _report(verdict: Verdict, findings: Sequence[Finding], accepted: Sequence[Accepted]) -> str:
    rel = TRIAGE_FILE.relative_to(REPO_ROOT) if TRIAGE_FILE.is_relative_to(REPO_ROOT) else TRIAGE_FILE
    if verdict.ok:
        return f"slither: {len(findings)} finding(s) on contracts/, each accepted in {rel} ({len(accepted)} entries)"
    lines = []
    if verdict.unexplained:
        lines.append(f"slither: {len(verdict.unexplained)} finding(s) not in {rel}: fix them, or triage them:")
        for f in verdict.unexplained:
            lines.append(f"  [{f.impact}/{f.confidence}] {f.detector} at {f.where}: {f.description}")
        lines.append("  entries to add once reviewed:")
        for f in verdict.unexplained:
            lines += ["", "[[accepted]]", f'detector = "{f.detector}"', f'where = "{f.where}"', 'reason = "..."']
    if verdict.stale:
        lines.append(f"slither: {len(verdict.stale)} triage entries in {rel} match no finding any more: delete them:")
        lines += [f"  {a.detector} at {a.where}" for a in verdict.stale]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    if argv:
        print(__doc__)
        return 0 if list(argv) in (["-h"], ["--help"]) else 2
    try:
        accepted = load_triage()
        findings = findings_from_slither(run_slither())
    except CheckError as exc:
        print(f"slither_check: {exc}", file=sys.stderr)
        return 2
    verdict = compare(findings, accepted)
    print(_report(verdict, findings, accepted), file=sys.stdout if verdict.ok else sys.stderr)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
