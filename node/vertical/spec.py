"""A vertical task's spec: who holds which columns, how they are encoded, the model and the terms.

Every party runs from the same spec file (JSON); its keccak256 (canonical JSON:
keys sorted, no spaces) is fixed in the task contract at deployment, so a party
refuses a task whose spec differs from its own.

    {"owner": {"name": "campaign", "address": "0x...", "columns": ["contact", ...]},
     "parties": [{"name": "demographics", "address": "0x...", "columns": ["age", ...]}, ...],
     "id_column": "customer",
     "data": {"target": "y", "positive": "yes", "numeric": {...}, "categorical": {...}},
     "model": {"kind": "logreg", "embed": 4, "epochs": 10, ...},
     "terms": {"bounty": 900, "stake": 100, "min_intersection": 100, "window": 3600, "slash": 0.5}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import is_address, keccak, to_checksum_address

from ledger.spec import TOKEN_UNIT
from ledger.vertical import TaskTerms
from node.errors import NodeError
from node.learn.data import DataError, Schema, encode_labels, infer_columns
from node.vertical.data import check_disjoint, load_party
from node.vertical.shapley import MAX_PLAYERS
from node.vertical.split import SplitSpec

__all__ = ["Member", "TaskSpec", "TermsSpec", "party_part", "spec_from_parts"]


@dataclass(frozen=True)
class Member:
    """A party of the task: its name, its account, the columns it holds."""

    name: str
    address: str
    columns: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "columns": list(self.columns)}

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Member:
        try:
            name, address, columns = str(raw["name"]), str(raw["address"]), tuple(str(c) for c in raw["columns"])
        except (KeyError, TypeError) as exc:
            raise NodeError(f"task spec {where}: needs name, address and columns ({exc})") from None
        if not name or not columns:
            raise NodeError(f"task spec {where}: a name and at least one column")
        if not is_address(address):
            raise NodeError(f"task spec {where} {name!r}: {address!r} is not an address")
        return cls(name, to_checksum_address(address), columns)


@dataclass(frozen=True)
class TermsSpec:
    """The task contract's terms, in whole tokens, seconds and a fraction of the stake; `token` is the ERC-20
    they are paid in (every member checks the deployed contract holds these, not just the spec's hash)."""

    bounty: float = 900
    stake: float = 100
    min_intersection: int = 100
    window: int = 3600
    slash: float = 0.5
    token: str = ""

    def on_chain(self, epochs: int) -> TaskTerms:
        return TaskTerms(
            bounty=int(self.bounty * TOKEN_UNIT),
            stake=int(self.stake * TOKEN_UNIT),
            epochs=epochs,
            min_intersection=self.min_intersection,
            window=self.window,
            slash_bps=round(self.slash * 10_000),
        )


@dataclass(frozen=True)
class TaskSpec:
    owner: Member
    parties: tuple[Member, ...]
    id_column: str
    schema: Schema
    model: SplitSpec
    terms: TermsSpec

    def __post_init__(self) -> None:
        members = [self.owner, *self.parties]
        if not self.parties:
            raise NodeError("task spec: the owner and at least one feature party")
        if len(self.parties) > MAX_PLAYERS:
            raise NodeError(f"task spec: {len(self.parties)} feature parties, at most {MAX_PLAYERS}")
        for what, values in (("names", [m.name for m in members]), ("addresses", [m.address for m in members])):
            if len(set(values)) != len(values):
                raise NodeError(f"task spec: party {what} repeat")
        check_disjoint({m.name: m.columns for m in members})
        for m in members:
            for c in m.columns:
                if c not in self.schema.numeric and c not in self.schema.categorical:
                    raise NodeError(f"task spec: column {c!r} of {m.name!r} is not in [data]")
        if self.terms.token and not is_address(self.terms.token):
            raise NodeError(f"task spec [terms] token = {self.terms.token!r}: not an address")
        if self.id_column in {c for m in members for c in m.columns} or self.id_column == self.schema.target:
            raise NodeError(f"task spec: the id column {self.id_column!r} cannot be a feature or the target")

    @property
    def members(self) -> list[Member]:
        return [self.owner, *self.parties]

    @property
    def names(self) -> list[str]:
        """The feature parties' names, in order."""
        return [p.name for p in self.parties]

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise NodeError(f"no party {name!r} in the task spec (parties: {', '.join(m.name for m in self.members)})")

    def name_of(self, address: str) -> str | None:
        for m in self.members:
            if m.address.lower() == address.lower():
                return m.name
        return None

    def part(self, name: str) -> Schema:
        """The schema of `name`'s columns (the target stays: only the owner's labels are read)."""
        return self.schema.restricted(self.member(name).columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner.to_dict(),
            "parties": [p.to_dict() for p in self.parties],
            "id_column": self.id_column,
            "data": self.schema.to_spec(),
            "model": dict(self.model.__dict__),
            "terms": dict(self.terms.__dict__),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> TaskSpec:
        if not isinstance(raw, dict):
            raise NodeError("task spec: expected a JSON object")
        missing = [k for k in ("owner", "parties", "id_column", "data", "model") if k not in raw]
        if missing:
            raise NodeError(f"task spec: missing {', '.join(missing)}")
        try:
            terms = TermsSpec(**dict(raw.get("terms", {})))
        except TypeError as exc:
            raise NodeError(f"task spec [terms]: {exc}") from None
        if not isinstance(raw["parties"], list):
            raise NodeError("task spec: parties must be a list")
        return cls(
            owner=Member.from_dict(raw["owner"], "owner"),
            parties=tuple(Member.from_dict(p, f"parties[{i}]") for i, p in enumerate(raw["parties"])),
            id_column=str(raw["id_column"]),
            schema=Schema.from_spec(raw["data"]),
            model=SplitSpec.from_spec(dict(raw["model"])),
            terms=terms,
        )

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def hash(self) -> bytes:
        return keccak(self.canonical_json().encode())

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> TaskSpec:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise NodeError(f"{path}: no such task spec") from None
        except (OSError, ValueError) as exc:
            raise NodeError(f"{path}: not a JSON task spec ({exc})") from None
        return cls.from_dict(raw)


def party_part(
    path: Path,
    name: str,
    address: str,
    id_column: str,
    columns: list[str] | None = None,
    target: str | None = None,
    positive: str | None = None,
) -> dict[str, Any]:
    """A party's part of a task spec, from its own CSV: its name, account, columns and their encoding
    (numeric centers and scales, categorical vocabularies), and for the owner the target. Nothing else
    about its rows leaves the party (the row count is no secret: the PSI reveals it)."""
    data = load_party(path, name, id_column)  # every row with one id, none repeated
    if target is not None and target not in data.columns:
        raise DataError(f"{path}: no target column {target!r} (columns: {', '.join(data.columns)})")
    wanted = [c for c in data.columns if c != target] if columns is None else list(columns)
    missing = [c for c in wanted if c not in data.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}")
    if target is not None and target in wanted:
        raise DataError(f"{path}: the target {target!r} cannot also be a feature")
    numeric, categorical, warnings = infer_columns(data.columns, data.rows, wanted)
    left_out = [c for c in wanted if c not in numeric and c not in categorical]
    if left_out:
        raise DataError(f"{path}: column {left_out[0]!r} is unique per row (an id?): not a feature; leave it out")
    part: dict[str, Any] = {
        "name": name,
        "address": Member.from_dict({"name": name, "address": address, "columns": wanted}, "part").address,
        "columns": wanted,
        "id_column": id_column,
        "numeric": numeric,
        "categorical": categorical,
        "rows": len(data.ids),
        "warnings": warnings,
    }
    if target is not None:
        if positive is None:
            raise NodeError("the owner's part needs --positive (the label value that counts as 1)")
        at = data.columns.index(target)
        encode_labels(path, [r[at] for r in data.rows], target, positive)  # checks both classes
        part.update({"target": target, "positive": positive})
    return part


def spec_from_parts(
    owner: dict[str, Any], parties: list[dict[str, Any]], model: SplitSpec, terms: TermsSpec
) -> TaskSpec:
    """The task spec from the owner's part and each party's (all with the same id column)."""
    if "target" not in owner:
        raise NodeError(f"part {owner.get('name')!r} has no target: the owner's part is made with --target")
    ids = {p.get("id_column") for p in [owner, *parties]}
    if len(ids) != 1:
        raise NodeError(f"the parts name different id columns: {sorted(map(str, ids))}")
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    for p in [owner, *parties]:
        numeric.update(p.get("numeric", {}))
        categorical.update(p.get("categorical", {}))
    schema = Schema.from_spec(
        {"target": owner["target"], "positive": owner["positive"], "numeric": numeric, "categorical": categorical}
    )
    return TaskSpec(
        owner=Member.from_dict(owner, "owner part"),
        parties=tuple(Member.from_dict(p, f"part {i + 1}") for i, p in enumerate(parties)),
        id_column=str(ids.pop()),
        schema=schema,
        model=model,
        terms=terms,
    )
