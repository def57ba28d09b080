"""What a peer reads from the federation spec: schema, model, training and aggregation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ledger.spec import FederationSpec
from node.core.codec import IntArray, Layout, content_hash, encode
from node.core.rules import RuleSettings, check_tolerance
from node.core.rules import rule as aggregation_rule
from node.core.scoring import SCORINGS
from node.errors import NodeError
from node.learn.data import Schema
from node.learn.model import ModelSpec, TrainConfig, initial_params, layout
from node.privacy.dp import DPConfig
from node.privacy.sealing import SealingSpec

__all__ = ["EVALUATION", "NodeSpec", "aggregation_settings", "model_hash", "scoring_rule"]

EVALUATION = "@evaluation"  # the evaluation vector's name in a member's content (no model parameter has an @)


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
    scoring: str = "agreement"
    privacy: DPConfig | None = None  # the spec's [privacy]: every member trains with DP-SGD
    sealing: SealingSpec | None = None  # the spec's [sealing]: updates and models only members (and auditors) read

    @classmethod
    def from_federation(cls, spec: FederationSpec) -> NodeSpec:
        data = spec.data
        schema = Schema.from_spec(data.get("data", {}))
        model = ModelSpec.from_spec(data.get("model", {}), schema.n_features)
        training = TrainConfig.from_spec(data.get("training", {}))
        scoring, privacy = scoring_rule(spec), DPConfig.from_spec(data)
        if privacy is not None and scoring == "evaluation":
            raise NodeError(
                "spec [privacy] with [scoring] rule = 'evaluation': a member's evaluation of the others' updates "
                "on its rows is published outside the privacy accountant; score by 'agreement'"
            )
        sealing = SealingSpec.from_spec(data)
        return cls(spec, schema, model, training, *aggregation_settings(spec), scoring, privacy, sealing)

    @property
    def layout(self) -> Layout:
        return layout(self.model)

    @cached_property
    def max_update_bytes(self) -> int:
        return len(encode(initial_params(self.model)))

    @property
    def evaluates(self) -> bool:
        """Whether members publish evaluations of the previous round's updates with their own."""
        return self.scoring == "evaluation"

    def content_layout(self, evaluated: int) -> Layout:
        """What a member's round content holds: the update and, when scoring by evaluation, the vector
        evaluating the previous round's `evaluated` members."""
        return {**self.layout, EVALUATION: (evaluated,)} if self.evaluates else self.layout

    def content_bytes(self, evaluated: int) -> int:
        """The exact size of a member's round content (`content_layout(evaluated)`, encoded)."""
        sizes = self._content_bytes
        if evaluated not in sizes:
            layout_ = self.content_layout(evaluated)
            sizes[evaluated] = len(encode({k: np.zeros(shape, dtype=np.int64) for k, shape in layout_.items()}))
        return sizes[evaluated]

    @cached_property
    def _content_bytes(self) -> dict[int, int]:
        return {}

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
        out = aggregation_rule(self.rule).combine(flat, RuleSettings(self.trim, self.attackers, self.krum_m))
        result, offset = {}, 0
        for k in names:
            size = int(np.prod(self.layout[k], dtype=np.int64))
            result[k] = out[offset : offset + size].reshape(self.layout[k])
            offset += size
        return result


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


def scoring_rule(spec: FederationSpec) -> str:
    """The spec's [scoring] rule (default: agreement); refused if unknown."""
    name = str(spec.data.get("scoring", {}).get("rule", "agreement"))
    if name not in SCORINGS:
        raise NodeError(f"[scoring] rule {name!r}: expected one of {', '.join(SCORINGS)}")
    return name


def model_hash(params: Mapping[str, IntArray]) -> bytes:
    return content_hash(encode(params))
