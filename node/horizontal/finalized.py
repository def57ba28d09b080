"""A finalized round's model, for use outside the federation: scoring (`fedchain predict`) and export.

`open_source` checks a deployment and its spec against the chain (the spec's
hash must be the contract's) and opens the store; `finalized_model` fetches
round N's model (default: the newest finalized) by its CID and checks it
against the hash the chain holds, so nothing a store or a peer serves is
trusted. In a sealed federation the reader is a member (its keystore, and the
model keys its daemon kept) or an auditor (its key file); a reader without the
model's key learns it by re-running the round from the updates sealed to it
(`node.horizontal.verify`). `model_card` says what the model is and where it
came from, for whoever runs it later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.chain import connect
from ledger.client import FederationClient
from ledger.deploy import Deployment, open_federation
from ledger.spec import FederationSpec
from ledger.types import Phase
from node import version
from node.core.codec import IntArray
from node.errors import NodeError
from node.horizontal.exchange import fetch_model
from node.horizontal.spec import NodeSpec
from node.horizontal.verify import verify_round
from node.learn.export import ONNX_INPUT, ONNX_OUTPUT, OPSET
from node.privacy.sealing import Sealer
from node.store import Store, open_store

__all__ = ["CARD_FORMAT", "FinalizedModel", "Source", "finalized_model", "model_card", "open_source"]

CARD_FORMAT = "fedchain.model-card/1"


@dataclass
class Source:
    """Where finalized models are read from: the federation (checked), its spec, the store, and the reader."""

    fed: FederationClient
    nspec: NodeSpec
    store: Store
    origin: int  # the deployment's block
    sealer: Sealer | None = None


@dataclass(frozen=True)
class FinalizedModel:
    round: int
    model_hash: bytes
    cid: str
    params: dict[str, IntArray]
    participants: list[str]  # the members whose updates were revealed in the round
    paid: list[str]  # those of them the round paid (their update scored above 0: it counted)


def open_source(deployment: Deployment, spec: FederationSpec, rpc: str, ipfs: str) -> Source:
    """The deployment's federation, its spec checked against the contract's hash, and the store."""
    if "0x" + spec.hash.hex() != deployment.spec_hash:
        raise NodeError(f"the spec hashes to 0x{spec.hash.hex()}; the deployment's is {deployment.spec_hash}")
    fed = open_federation(connect(rpc, deployment.chain_id), deployment)
    if fed.spec_hash() != spec.hash:
        raise NodeError(f"the contract's spec hash 0x{fed.spec_hash().hex()} differs from the spec's")
    return Source(fed, NodeSpec.from_federation(spec), open_store(ipfs), deployment.block)


def finalized_model(src: Source, round_id: int | None = None) -> FinalizedModel:
    """Round `round_id`'s model (default: the newest finalized), checked against the chain's hash."""
    fed, nspec = src.fed, src.nspec
    k = fed.last_finalized() if round_id is None else round_id
    if k == 0:
        raise NodeError("no round has finalized yet: the federation has no model to use")
    info = fed.round(k)
    if info.phase != Phase.FINALIZED:
        raise NodeError(f"round {k} is {info.phase.name.lower()}, not finalized: it has no agreed model")
    if nspec.sealing is not None and src.sealer is None:
        raise NodeError(
            "this federation is sealed: read its models as a member (--keystore, or --config) or as an "
            "auditor of its spec (--seal-key)"
        )
    sealer = src.sealer
    if sealer is not None and not sealer.knows(k):  # learn the model's key: re-run the round from its updates
        verdict = verify_round(fed, src.store, nspec, k, src.origin, sealer)
        if not verdict.ok or not sealer.knows(k):
            reason = next((line for line in verdict.lines if line.startswith("MISMATCH")), verdict.lines[-1])
            raise NodeError(f"cannot open round {k}'s sealed model: {reason.removeprefix('MISMATCH: ')}")
    params = fetch_model(fed, src.store, nspec, k, sealer)
    participants = sorted({r.member for r in fed.reveals([k], src.origin)})
    credited = fed.events("RewardCredited", src.origin)
    paid = sorted({str(e["args"]["member"]) for e in credited if int(e["args"]["round"]) == k})
    return FinalizedModel(k, info.model_hash, info.model_cid, params, participants, paid)


def model_card(src: Source, fm: FinalizedModel, metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the model is and where it came from (`metrics`: measured by the exporter on its own rows)."""
    nspec = src.nspec
    return {
        "format": CARD_FORMAT,
        "federation": {
            "chain_id": src.fed.chain.chain_id,
            "contract": src.fed.address,
            "spec_hash": "0x" + nspec.federation.hash.hex(),
            "sealed": nspec.sealing is not None,
        },
        "round": fm.round,
        "model_hash": "0x" + fm.model_hash.hex(),
        "model_cid": fm.cid,
        "participants": fm.participants,  # revealed an update in the round
        "paid": fm.paid,  # of those, the ones whose update counted (scored above 0) and were paid
        "model": {"kind": nspec.model.kind, "n_features": nspec.model.n_features, "hidden": nspec.model.hidden},
        "schema": nspec.schema.to_spec(),
        "features": nspec.schema.feature_names(),
        "files": {"safetensors": "model.safetensors", "onnx": "model.onnx"},
        "onnx": {"input": ONNX_INPUT, "output": ONNX_OUTPUT, "opset": OPSET, "score": "probability of the positive"},
        "metrics": dict(metrics) if metrics is not None else None,
        "exported_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fedchain": version(),
    }
