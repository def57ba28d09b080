"""Compile the Solidity sources with py-solc-x and keep the artifacts in the repo.

Artifacts (ABI + bytecode) are committed under `ledger/artifacts/` and ship as
package data, so that deploying needs no compiler (and `import ledger` never
loads this module). Each records a digest of the sources and compiler
settings it came from; `stale_artifacts()` says which no longer match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import solcx

from .contracts import ARTIFACTS_DIR
from .errors import CompileError
from .toolchain import REPO_ROOT, solc_path

__all__ = ["ARTIFACTS_DIR", "CONTRACTS", "CONTRACTS_DIR", "compile_sources", "stale_artifacts", "write_artifacts"]

CONTRACTS_DIR = REPO_ROOT / "contracts"
OZ_DIR = REPO_ROOT / "scripts" / "toolchain" / "node_modules"
CONTRACTS = ("Federation", "RewardToken", "VerticalTask")
EVM_VERSION = "cancun"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": EVM_VERSION,
    "remappings": ["@openzeppelin/=scripts/toolchain/node_modules/@openzeppelin/"],
    "outputSelection": {"*": {"*": ["abi", "userdoc", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def _source_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.sol"))


def sources_digest(files: list[Path], compiler: str) -> str:
    """sha256 over the compiler version, settings and every source file's name and text."""
    h = hashlib.sha256()
    h.update(compiler.encode())
    h.update(json.dumps(SETTINGS, sort_keys=True).encode())
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def compiler_version() -> str:
    solc = solc_path()
    if solc is None:
        raise CompileError("no Solidity compiler: run `make setup`")
    return str(solcx.wrapper.get_version_str_from_solc_binary(solc))


def compile_sources(directory: Path = CONTRACTS_DIR, extra: list[Path] | None = None) -> dict[str, dict[str, Any]]:
    """Compile every .sol file in `directory` (plus `extra`); returns artifacts by contract name."""
    solc = solc_path()
    if solc is None:
        raise CompileError("no Solidity compiler: run `make setup`")
    files = _source_files(directory) + list(extra or [])
    sources = {str(p.relative_to(REPO_ROOT)): {"content": p.read_text()} for p in files}
    try:
        out = solcx.compile_standard(
            {"language": "Solidity", "sources": sources, "settings": SETTINGS},
            solc_binary=solc,
            base_path=str(REPO_ROOT),
            allow_paths=[str(REPO_ROOT), str(OZ_DIR)],
        )
    except solcx.exceptions.SolcError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise CompileError(f"solc rejected the sources: {first}") from exc
    version = compiler_version()
    digest = sources_digest(_source_files(CONTRACTS_DIR), version)
    artifacts: dict[str, dict[str, Any]] = {}
    for source, contracts in out["contracts"].items():
        for name, data in contracts.items():
            if not source.startswith(str(directory.relative_to(REPO_ROOT))) and name not in CONTRACTS:
                continue
            artifacts[name] = {
                "contractName": name,
                "source": source,
                "compiler": version,
                "sourcesDigest": digest,
                "abi": data["abi"],
                "userdoc": data.get("userdoc", {}),
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def write_artifacts() -> list[Path]:
    """Compile the production contracts and write `ledger/artifacts/<Name>.json`."""
    artifacts = compile_sources()
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = ARTIFACTS_DIR / f"{name}.json"
        path.write_text(json.dumps(artifacts[name], indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def stale_artifacts() -> list[str]:
    """Names of committed artifacts whose recorded digest no longer matches the sources."""
    digest = sources_digest(_source_files(CONTRACTS_DIR), compiler_version())
    stale = []
    for name in CONTRACTS:
        path = ARTIFACTS_DIR / f"{name}.json"
        if not path.is_file() or json.loads(path.read_text()).get("sourcesDigest") != digest:
            stale.append(name)
    return stale


def main() -> None:
    """`make artifacts`: recompile and rewrite the committed artifacts."""
    for written in write_artifacts():
        print(written.relative_to(REPO_ROOT))
