"""A peer's configuration file (`fedchain node init` writes it, `fedchain node run` reads it)."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from node.errors import NodeError

__all__ = ["PeerConfig"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ipfs(address: str, base: Path) -> str:
    """An `embedded:DIR` store address, with DIR made absolute against the config's folder."""
    if address.startswith("embedded:"):
        where = Path(address.removeprefix("embedded:"))
        return "embedded:" + str(where if where.is_absolute() else base / where)
    return address


@dataclass(frozen=True)
class PeerConfig:
    """Where a peer's data, key, federation, chain and IPFS node are. Relative paths are relative to the file."""

    name: str
    data: Path
    keystore: Path
    deployment: Path
    spec: Path
    rpc: str
    ipfs: str  # a Kubo API multiaddr, or "embedded:DIR"
    state: Path
    password_file: Path | None = None
    poll_seconds: float = 1.0

    def save(self, path: Path, overwrite: bool = False) -> None:
        if path.exists() and not overwrite:
            raise NodeError(f"{path} exists; refusing to overwrite a peer config")
        lines = ["# fedchain peer configuration", "[peer]"]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                lines.append(f"{f.name} = {_toml_value(value)}")
        path.write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: Path) -> PeerConfig:
        try:
            table = tomllib.loads(path.read_text())["peer"]
        except FileNotFoundError as exc:
            raise NodeError(f"peer config {path} does not exist (write one with `fedchain node init`)") from exc
        except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
            raise NodeError(f"peer config {path} is not a valid [peer] TOML table: {exc}") from exc
        if not isinstance(table, dict):
            raise NodeError(f"peer config {path}: [peer] is not a table")
        base = path.parent

        def text(key: str) -> str:
            if key not in table:
                raise NodeError(f"peer config {path}: missing key {key!r}")
            value = table[key]
            if not isinstance(value, str) or not value:
                raise NodeError(f"peer config {path}: {key} = {value!r}: expected a non-empty string")
            return value

        def at(key: str) -> Path:
            p = Path(text(key))
            return p if p.is_absolute() else base / p

        poll = table.get("poll_seconds", 1.0)
        if isinstance(poll, bool) or not isinstance(poll, int | float) or not (math.isfinite(poll) and poll > 0):
            raise NodeError(f"peer config {path}: poll_seconds = {poll!r}: expected a number of seconds above 0")
        return cls(
            name=text("name"),
            data=at("data"),
            keystore=at("keystore"),
            deployment=at("deployment"),
            spec=at("spec"),
            rpc=text("rpc"),
            ipfs=_ipfs(text("ipfs"), base),
            state=at("state"),
            password_file=at("password_file") if "password_file" in table else None,
            poll_seconds=float(poll),
        )
