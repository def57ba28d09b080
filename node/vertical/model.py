"""A member's trained part of a vertical model, kept on its own disk for scoring after the task.

A feature party keeps its bottom model; the task owner keeps its top model and
each party's fallback embedding (its mean embedding over the last epoch it
completed), and which parties were dropped. The file is a NumPy `.npz` archive
of float32 arrays plus a JSON header (as bytes): no pickle, so loading a file
runs no code. The header names the task (chain id, contract, spec hash) and the
member, and a file for another task or member is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ledger.files import write_atomic
from node.errors import NodeError
from node.vertical.split import Bottom, SplitSpec, Top
from node.vertical.state import load_module, module_arrays, pack_arrays, unpack_arrays

__all__ = ["OwnerModel", "PartyModel", "load_owner_model", "load_party_model", "save_model"]

_FORMAT = "fedchain/vertical-model/v1"
_NET = "net/"
_FALLBACK = "fallback/"


@dataclass(frozen=True)
class PartyModel:
    """A feature party's trained bottom model."""

    bottom: Bottom


@dataclass(frozen=True)
class OwnerModel:
    """The owner's trained top model, each party's fallback embedding, and the parties still in."""

    top: Top
    fallback: dict[str, npt.NDArray[np.float32]]
    parties: list[str]  # the spec's parties, in order (the top model's input order)
    active: list[str]  # those not dropped: the ones scoring asks


def save_model(
    path: Path,
    task: Mapping[str, Any],
    name: str,
    net: torch.nn.Module,
    fallback: Mapping[str, npt.NDArray[np.float32]] | None = None,
    active: Sequence[str] = (),
) -> None:
    """Write `name`'s trained network (and, for the owner, the fallbacks and the parties still in) for
    task `task` (chain_id, contract, spec_hash) to `path`, atomically."""
    meta = {"format": _FORMAT, **task, "name": name, "active": list(active)}
    arrays = module_arrays(_NET, net)
    arrays.update({_FALLBACK + p: np.asarray(v, dtype=np.float32) for p, v in (fallback or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, pack_arrays(meta, arrays), mode=0o600)


def _read(path: Path, task: Mapping[str, Any], name: str) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NodeError(f"{path}: no trained model here (a member keeps it when its task's training ends)") from None
    except OSError as exc:
        raise NodeError(f"{path}: cannot read the model ({exc.strerror})") from None
    meta, arrays = unpack_arrays(data, f"{path}: not a fedchain vertical model")
    if any(not np.issubdtype(v.dtype, np.number) for v in arrays.values()):
        raise NodeError(f"{path}: not a fedchain vertical model (arrays that are not numbers)")
    if meta.get("format") != _FORMAT or not isinstance(meta.get("active"), list):
        raise NodeError(f"{path}: not a fedchain vertical model")
    for k, v in task.items():
        if str(meta.get(k, "")).lower() != str(v).lower():
            raise NodeError(f"{path}: the model of another task ({k} {meta.get(k)}, not {v})")
    if meta.get("name") != name:
        raise NodeError(f"{path}: {meta.get('name')!r}'s model, not {name!r}'s")
    return meta, arrays


def _load_net(net: torch.nn.Module, arrays: Mapping[str, npt.NDArray[Any]], path: Path) -> None:
    try:
        load_module(_NET, net, arrays)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise NodeError(f"{path}: the model does not fit this task's spec ({first})") from None


def load_party_model(path: Path, task: Mapping[str, Any], name: str, n_features: int, spec: SplitSpec) -> PartyModel:
    """A feature party's bottom model, saved by `save_model`, for its `n_features` encoded columns."""
    _, arrays = _read(path, task, name)
    bottom = Bottom(n_features, spec, 0)
    _load_net(bottom.net, arrays, path)
    return PartyModel(bottom)


def load_owner_model(
    path: Path, task: Mapping[str, Any], name: str, n_own: int, parties: Sequence[str], spec: SplitSpec
) -> OwnerModel:
    """The owner's top model, fallbacks and active parties, saved by `save_model`."""
    meta, arrays = _read(path, task, name)
    top = Top(n_own, len(parties), spec, 0)
    _load_net(top.net, arrays, path)
    fallback = {}
    for p in parties:
        v = arrays.get(_FALLBACK + p)
        if v is None or v.shape != (spec.embed,) or not np.isfinite(v.astype(np.float64)).all():
            raise NodeError(f"{path}: no usable fallback embedding for {p!r}")
        fallback[p] = np.asarray(v, dtype=np.float32)
    active = [p for p in meta.get("active", []) if p in parties]
    return OwnerModel(top, fallback, list(parties), active)
