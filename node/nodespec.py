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

__all__ = ["RULES", "NodeSpec", "model_hash"]

RULES = ("fedavg", "median", "trimmed-mean", "multi-krum")


@dataclass(frozen=True)
class NodeSpec:
    federation: FederationSpec
    schema: Schema
    model: ModelSpec
    training: TrainConfig
    rule: str
    trim: float
    krum_f: int
    krum_m: int | None

    @classmethod
    def from_federation(cls, spec: FederationSpec) -> NodeSpec:
        data = spec.data
        schema = Schema.from_spec(data.get("data", {}))
        model = ModelSpec.from_spec(data.get("model", {}), schema.n_features)
        training = TrainConfig.from_spec(data.get("training", {}))
        agg: Mapping[str, Any] = data.get("aggregation", {})
        rule = str(agg.get("rule", "fedavg"))
        if rule not in RULES:
            raise NodeError(f"spec [aggregation] rule = {rule!r}: expected one of {', '.join(RULES)}")
        m = agg.get("m")
        return cls(spec, schema, model, training, rule, float(agg.get("trim", 0.2)), int(agg.get("f", 1)), m)

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
        else:
            out = aggregate.multi_krum(flat, self.krum_f, self.krum_m)
        result, offset = {}, 0
        for k in names:
            size = int(np.prod(self.layout[k], dtype=np.int64))
            result[k] = out[offset : offset + size].reshape(self.layout[k])
            offset += size
        return result


def model_hash(params: Mapping[str, IntArray]) -> bytes:
    return content_hash(encode(params))
