"""The federation spec: a TOML file fixed at deployment, whose hash goes on chain.

Only the `[chain]`, `[token]` and `[members]` tables matter to the ledger; the
rest (model, features, aggregation) belongs to the peers but is hashed too, so
every peer can refuse a federation whose spec differs from its own.

The hash is keccak256 of the spec's canonical JSON: keys sorted, no spaces,
ASCII only. Two TOML files that parse to the same values have the same hash.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import is_address, keccak, to_checksum_address

from .errors import SpecError

__all__ = ["TOKEN_UNIT", "FederationSpec", "load_spec", "spec_from_dict"]

TOKEN_UNIT = 10**18  # token amounts in the spec are whole tokens (18 decimals)

_CHAIN_DEFAULTS: dict[str, Any] = {
    "stake": 100,
    "reward_per_round": 10,
    "commit_window": 600,
    "reveal_window": 600,
    "vote_window": 600,
    "quorum": 0.6666,  # at least two thirds: exactly 2/3 passes (for up to 256 revealers), so a third cannot block
    "min_peers": 2,
    "slash": 0.5,
    "block_time": 2,
}
# A phase window must span at least this many blocks: a member that also produces blocks
# can stamp them a little early or late, and must not be able to close a window on others.
SAFE_WINDOW_BLOCKS = 10
# Token amounts (in base units) must fit the contract's 128-bit stakes.
MAX_SUPPLY = (2**128 - 1) // TOKEN_UNIT
_TOKEN_DEFAULTS: dict[str, Any] = {
    "name": "Fedchain Reward",
    "symbol": "FCR",
    "supply": 1_000_000,
    "pool": 10_000,
    "founder_grant": 1_000,
}


def _number(table: dict[str, Any], key: str, where: str, lo: float, hi: float) -> float:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise SpecError(f"spec [{where}] {key} = {value!r}: expected a number from {lo:g} to {hi:g}")
    return float(value)


@dataclass(frozen=True)
class FederationSpec:
    """A parsed spec. `data` is everything in the file, defaults filled in."""

    data: dict[str, Any]

    @property
    def hash(self) -> bytes:
        return keccak(self.canonical_json().encode())

    def to_toml(self) -> str:
        """The spec as TOML (tables of strings, numbers, lists and inline tables); it hashes the same."""

        def value(v: Any) -> str:
            if isinstance(v, dict):
                return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + "}"
            if isinstance(v, list):
                return "[" + ", ".join(value(x) for x in v) + "]"
            if isinstance(v, bool):
                return "true" if v else "false"
            return json.dumps(v)

        lines: list[str] = []
        for table, body in self.data.items():
            lines.append(f"[{table}]")
            lines += [f"{json.dumps(str(k))} = {value(v)}" for k, v in dict(body).items()]
        return "\n".join(lines) + "\n"

    def canonical_json(self) -> str:
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def founders(self) -> list[str]:
        return [to_checksum_address(a) for a in self.data["members"]["founders"]]

    @property
    def token(self) -> dict[str, Any]:
        return dict(self.data["token"])

    def chain_config(self) -> tuple[int, int, int, int, int, int, int, int]:
        """The on-chain IFederation.Config tuple."""
        c = self.data["chain"]
        return (
            int(c["stake"] * TOKEN_UNIT),
            int(c["reward_per_round"] * TOKEN_UNIT),
            int(c["commit_window"]),
            int(c["reveal_window"]),
            int(c["vote_window"]),
            round(c["quorum"] * 10_000),
            int(c["min_peers"]),
            round(c["slash"] * 10_000),
        )


def _validate(data: dict[str, Any]) -> None:
    chain, token = data["chain"], data["token"]
    _number(chain, "block_time", "chain", 0.1, 3600)
    for key in ("commit_window", "reveal_window", "vote_window"):
        _number(chain, key, "chain", 1, 10**9)
        if chain[key] < SAFE_WINDOW_BLOCKS * chain["block_time"]:
            raise SpecError(
                f"spec [chain] {key} = {chain[key]}: shorter than {SAFE_WINDOW_BLOCKS} blocks of "
                f"block_time = {chain['block_time']} s; a member producing blocks could cut it short"
            )
    _number(chain, "quorum", "chain", 0.5001, 1)
    _number(chain, "min_peers", "chain", 1, 256)
    _number(chain, "slash", "chain", 0, 1)
    for key in ("supply", "pool", "founder_grant"):
        _number(token, key, "token", 0, MAX_SUPPLY)
    _number(chain, "stake", "chain", 1e-18, MAX_SUPPLY)
    _number(chain, "reward_per_round", "chain", 0, MAX_SUPPLY)
    founders = data.get("members", {}).get("founders")
    if not isinstance(founders, list) or not founders:
        raise SpecError("spec [members] founders: list at least one founder address")
    for address in founders:
        if not isinstance(address, str) or not is_address(address):
            raise SpecError(f"spec [members] founders: {address!r} is not an Ethereum address")
    if len({a.lower() for a in founders}) != len(founders):
        raise SpecError("spec [members] founders: an address is listed twice")
    need = token["pool"] + token["founder_grant"] * len(founders)
    if need > token["supply"]:
        raise SpecError(f"spec [token]: pool + grants ({need:g}) exceed the supply ({token['supply']:g})")


def spec_from_dict(raw: dict[str, Any]) -> FederationSpec:
    """Fill in defaults, validate, and wrap a spec given as a dict."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    data["chain"] = {**_CHAIN_DEFAULTS, **data.get("chain", {})}
    data["token"] = {**_TOKEN_DEFAULTS, **data.get("token", {})}
    data.setdefault("members", {})
    _validate(data)
    return FederationSpec(data)


def load_spec(path: Path) -> FederationSpec:
    """Read and validate a spec TOML file."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"spec file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec file {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec file {path} is not valid TOML: {exc}") from exc
    return spec_from_dict(raw)
