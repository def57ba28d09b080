"""What a peer reads from the federation spec: schema, model, training and aggregation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ledger.spec import FederationSpec

from . import aggregate
from .codec import IntArray, Layout, content_hash, encode
from .data import Schema
from .errors import NodeError
from .model import ModelSpec, TrainConfig, initial_params, layout

__all__ = ["RULES", "NodeSpec", "aggregation_settings", "check_tolerance", "model_hash", "tolerance"]

RULES = ("fedavg", "median", "trimmed-mean", "multi-krum")


@dataclass(frozen=True)
class NodeSpec:
    federation: FederationSpec
    schema: Schema
    model: ModelSpec
    training: TrainConfig
    rule: str
    trim: float
    attackers: int  # the most attackers a round must withstand (Krum's f)
    krum_m: int | None

    @classmethod
    def from_federation(cls, spec: FederationSpec) -> NodeSpec:
        data = spec.data
        schema = Schema.from_spec(data.get("data", {}))
        model = ModelSpec.from_spec(data.get("model", {}), schema.n_features)
        training = TrainConfig.from_spec(data.get("training", {}))
        return cls(spec, schema, model, training, *aggregation_settings(spec))

    @property
    def layout(self) -> Layout:
        return layout(self.model)

    @property
    def max_update_bytes(self) -> int:
        return len(encode(initial_params(self.model)))

    def flatten(self, params: Mapping[str, IntArray]) -> IntArray:
        """All parameters as one vector, in the model's order."""
        return np.concatenate([params[k].ravel() for k in self.layout])

    def initial_model(self) -> dict[str, IntArray]:
        return initial_params(self.model)

    def aggregate(self, updates: list[dict[str, IntArray]]) -> dict[str, IntArray]:
        """The spec's rule over `updates` (in canonical order), all parameters as one vector.

        FedAvg weighs every accepted update alike: a peer's row count is its own claim,
        and a weight nobody can check would be the cheapest way to poison the mean.
        """
        names = list(self.layout)
        flat = np.stack([self.flatten(u) for u in updates])
        if self.rule == "fedavg":
            out = aggregate.fedavg(flat)
        elif self.rule == "median":
            out = aggregate.median(flat)
        elif self.rule == "trimmed-mean":
            out = aggregate.trimmed_mean(flat, self.trim)
        elif len(updates) < 3:  # too few for Krum at all
            out = aggregate.median(flat)
        else:  # with fewer usable updates than the spec planned for, Krum with the f they allow
            f = min(self.attackers, tolerance("multi-krum", len(updates)))
            out = aggregate.multi_krum(flat, f, self.krum_m if f == self.attackers else None)
        result, offset = {}, 0
        for k in names:
            size = int(np.prod(self.layout[k], dtype=np.int64))
            result[k] = out[offset : offset + size].reshape(self.layout[k])
            offset += size
        return result


def tolerance(rule: str, n: int, trim: float = 0.2) -> int:
    """How many attackers `rule` withstands in a round of `n` updates.

    FedAvg: none (one update can move the mean anywhere). Median: fewer than half,
    f <= (n - 1) / 2. Trimmed mean: as many as it trims from each end, floor(trim * n).
    Multi-Krum: n >= 2f + 3 (Blanchard et al. 2017).
    """
    if rule == "fedavg":
        return 0
    if rule == "median":
        return max(0, (n - 1) // 2)
    if rule == "trimmed-mean":
        return int(trim * n)
    return max(0, (n - 3) // 2)


def aggregation_settings(spec: FederationSpec) -> tuple[str, float, int, int | None]:
    """The spec's [aggregation] rule, trim, attackers and Multi-Krum m; refused if the rule cannot
    withstand the attackers (see `check_tolerance`). A spec without the table means FedAvg, no attackers."""
    agg: Mapping[str, Any] = spec.data.get("aggregation", {})
    rule, trim, attackers, m = (
        str(agg.get("rule", "fedavg")),
        float(agg.get("trim", 0.2)),
        int(agg.get("attackers", 0)),
        agg.get("m"),
    )
    check_tolerance(rule, attackers, int(spec.data["chain"]["min_peers"]), trim)
    return rule, trim, attackers, None if m is None else int(m)


def check_tolerance(rule: str, attackers: int, min_peers: int, trim: float = 0.2) -> None:
    """Refuse a spec whose rule cannot withstand its declared attackers in its smallest round."""
    if rule not in RULES:
        raise NodeError(f"spec [aggregation] rule = {rule!r}: expected one of {', '.join(RULES)}")
    if rule == "trimmed-mean" and not 0 <= trim < 0.5:
        raise NodeError(f"spec [aggregation] trim = {trim}: expected at least 0 and below 0.5")
    if attackers < 0:
        raise NodeError(f"spec [aggregation] attackers = {attackers}: expected 0 or more")
    can = tolerance(rule, min_peers, trim)
    if attackers > can:
        need = {"median": "n >= 2f + 1", "trimmed-mean": "floor(trim * n) >= f", "multi-krum": "n >= 2f + 3"}
        why = f"{rule} tolerates no attacker" if rule == "fedavg" else f"{rule} needs {need[rule]}"
        raise NodeError(
            f"spec [aggregation] attackers = {attackers} cannot be withstood: {why}, and with "
            f"[chain] min_peers = {min_peers} a round may finalize with {min_peers} updates, "
            f"which tolerates {can}; raise min_peers, declare fewer attackers or pick a more robust rule"
        )


def model_hash(params: Mapping[str, IntArray]) -> bytes:
    return content_hash(encode(params))
