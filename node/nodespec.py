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

__all__ = ["RULES", "NodeSpec", "check_tolerance", "model_hash", "tolerance"]

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
        agg: Mapping[str, Any] = data.get("aggregation", {})
        rule = str(agg.get("rule", "fedavg"))
        trim, attackers, m = float(agg.get("trim", 0.2)), int(agg.get("attackers", 0)), agg.get("m")
        check_tolerance(rule, attackers, int(spec.data["chain"]["min_peers"]), trim)
        return cls(spec, schema, model, training, rule, trim, attackers, None if m is None else int(m))

    @property
    def layout(self) -> Layout:
        return layout(self.model)

    @property
    def max_update_bytes(self) -> int:
        return len(encode(initial_params(self.model)))

    def initial_model(self) -> dict[str, IntArray]:
        return initial_params(self.model)

    def aggregate(self, updates: list[dict[str, IntArray]]) -> dict[str, IntArray]:
        """The spec's rule over `updates` (in canonical order), all parameters as one vector.

        FedAvg weighs every accepted update alike: a peer's row count is its own claim,
        and a weight nobody can check would be the cheapest way to poison the mean.
        """
        names = list(self.layout)
        flat = np.stack([np.concatenate([u[k].ravel() for k in names]) for u in updates])
        if self.rule == "fedavg":
            out = aggregate.fedavg(flat)
        elif self.rule == "median":
            out = aggregate.median(flat)
        elif self.rule == "trimmed-mean":
            out = aggregate.trimmed_mean(flat, self.trim)
        elif len(updates) >= 2 * self.attackers + 3:
            out = aggregate.multi_krum(flat, self.attackers, self.krum_m)
        else:  # fewer usable updates than the spec planned for: Krum with the f they allow, or the median
            f = (len(updates) - 3) // 2
            out = aggregate.multi_krum(flat, f) if f >= 0 else aggregate.median(flat)
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
