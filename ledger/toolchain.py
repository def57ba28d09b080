"""Where fedchain's outside tools live, and what versions they are.

`make setup` installs every tool into the repository (or, for Kubo, into a
per-machine cache); this module finds them. Each can be overridden with an
environment variable so a user may bring their own build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GETH_VERSION",
    "TOXIPROXY_VERSION",
    "KUBO_VERSION",
    "REPO_ROOT",
    "Tool",
    "anvil_path",
    "geth_path",
    "kubo_path",
    "solc_path",
    "tools",
    "toxiproxy_path",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBO_VERSION = "v0.42.0"
TOXIPROXY_VERSION = "v2.5.0"  # Shopify's toxiproxy: latency, stalls and resets between a peer and its services
GETH_VERSION = "v1.17.10"  # go-ethereum: the second chain client the contract suite runs on (geth --dev)
_NODE_MODULES = REPO_ROOT / "scripts" / "toolchain" / "node_modules"


@dataclass(frozen=True)
class Tool:
    """One outside tool: where it is (None if missing), its version, and how to get it."""

    name: str
    path: Path | None
    version: str | None
    fix: str

    @property
    def ok(self) -> bool:
        return self.path is not None and self.version is not None


def _from_env(var: str, default: Path) -> Path | None:
    value = os.environ.get(var)
    candidate = Path(value) if value else default
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(value) if value else None
    return Path(found) if found else None


def solc_path() -> Path | None:
    """The solc executable: FEDCHAIN_SOLC, else the wasm-backed shim in scripts/."""
    shim = REPO_ROOT / "scripts" / "solc-shim.js"
    if not os.environ.get("FEDCHAIN_SOLC") and not (_NODE_MODULES / "solc").is_dir():
        return None
    return _from_env("FEDCHAIN_SOLC", shim)


def anvil_path() -> Path | None:
    """The anvil executable: FEDCHAIN_ANVIL, else the one npm installed."""
    return _from_env("FEDCHAIN_ANVIL", _NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil")


def _cache_dir(name: str) -> Path:
    """Where `make setup` keeps a tool it builds from Go, once per machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fedchain" / name


def kubo_cache_dir() -> Path:
    return _cache_dir(f"kubo-{KUBO_VERSION}")


def kubo_path() -> Path | None:
    """The Kubo (ipfs) executable: FEDCHAIN_IPFS, else the cached build of KUBO_VERSION."""
    return _from_env("FEDCHAIN_IPFS", kubo_cache_dir() / "ipfs")


def toxiproxy_path() -> Path | None:
    """The toxiproxy server: FEDCHAIN_TOXIPROXY, else the cached build of TOXIPROXY_VERSION."""
    return _from_env("FEDCHAIN_TOXIPROXY", _cache_dir(f"toxiproxy-{TOXIPROXY_VERSION}") / "toxiproxy-server")


def geth_path() -> Path | None:
    """The geth executable: FEDCHAIN_GETH, else the cached build of GETH_VERSION."""
    return _from_env("FEDCHAIN_GETH", _cache_dir(f"geth-{GETH_VERSION}") / "geth")


def _version(path: Path | None, *args: str) -> str | None:
    if path is None:
        return None
    try:
        out = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\d+\.\d+\.\d+\S*", out.stdout)
    return match.group(0) if match else None


def tools() -> list[Tool]:
    """Every outside tool with its path and version (None where missing or broken)."""
    solc, anvil, kubo, geth, toxi = solc_path(), anvil_path(), kubo_path(), geth_path(), toxiproxy_path()
    return [
        Tool("solc", solc, _version(solc, "--version"), "run `make setup` (npm solc into scripts/toolchain)"),
        Tool("anvil", anvil, _version(anvil, "--version"), "run `make setup` (npm @foundry-rs/anvil-linux-amd64)"),
        Tool("kubo", kubo, _version(kubo, "version"), f"run `make setup` (builds Kubo {KUBO_VERSION} from Go)"),
        Tool("geth", geth, _version(geth, "version"), f"run `make setup` (builds go-ethereum {GETH_VERSION} from Go)"),
        Tool(
            "toxiproxy",
            toxi,
            _version(toxi, "-version"),
            f"run `make setup` (builds toxiproxy {TOXIPROXY_VERSION} from Go)",
        ),
    ]
