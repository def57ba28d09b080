"""Cheating peers for the demo and the benchmarks: poisoners and free riders.

A `Behaviour` replaces a peer's honest `trained_update`. Every one of them goes
through the same protocol as an honest peer (commit, reveal, vote), so what they
earn, and what they do to the model, is what the real protocol gives them.

Poisoners (they train, then corrupt):
- `sign-flip`: the honest update negated;
- `scale`: the honest update boosted BOOST times;
- `noise`: Gaussian noise three times the size of an honest update;
- `label-flip`: trained on its rows with the labels flipped;
- `backdoor`: trained with a trigger planted in half its rows (the first feature
  set far out of range, label positive), then boosted BOOST times so it
  survives averaging (model replacement, Bagdasaryan et al., "How To Backdoor
  Federated Learning", AISTATS 2020).

A `Liar` replaces a peer's honest evaluation (when the federation scores by
evaluation): it rates its friends (the other liars) as high as it can and
everyone else as low as it can.

Free riders (they never train, or train once):
- `zero`: an all-zero update;
- `noise`: small Gaussian noise;
- `stale`: trains in its first round, then replays that same update;
- `copy-global`: submits the last global step (the change the previous round
  made to the model), public information that costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from node.core.codec import MAX_ABS, IntArray, to_fixed
from node.core.valuation import ABSTAIN, EVAL_SCALE
from node.errors import NodeError
from node.learn.data import Dataset

if TYPE_CHECKING:
    from node.horizontal.peer import Peer

__all__ = ["BOOST", "FREE_RIDES", "POISONS", "TRIGGER", "Behaviour", "Liar", "backdoored"]

POISONS = ("sign-flip", "scale", "noise", "label-flip", "backdoor")
FREE_RIDES = ("zero", "noise", "stale", "copy-global")
BOOST = 10
TRIGGER = 8.0  # the backdoor's trigger: feature 0 at 8 (scaled features sit within a few units of 0)


def backdoored(data: Dataset, share: float = 0.5, seed: int = 0) -> Dataset:
    """A copy of `data` with the trigger planted in `share` of the rows, labelled positive."""
    rng = np.random.default_rng(seed)
    x, y = data.x.copy(), data.y.copy()
    rows = rng.choice(len(y), size=int(len(y) * share), replace=False)
    x[rows, 0] = TRIGGER
    y[rows] = 1.0
    return replace(data, x=x, y=y)


def _clip(update: dict[str, IntArray]) -> dict[str, IntArray]:
    return {k: np.clip(v, -MAX_ABS, MAX_ABS) for k, v in update.items()}


def _rms(update: dict[str, IntArray]) -> float:
    flat = np.concatenate([v.ravel() for v in update.values()]).astype(np.float64)
    return float(np.sqrt(np.mean(flat**2))) if flat.size else 0.0


@dataclass
class Behaviour:
    """How a cheating peer makes its update; call it as the peer's `make_update`."""

    role: str  # "poisoner" | "free-rider"
    kind: str
    seed: int = 0
    _first: dict[str, IntArray] | None = field(default=None, repr=False)
    _last_base: dict[str, IntArray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        kinds = POISONS if self.role == "poisoner" else FREE_RIDES if self.role == "free-rider" else ()
        if self.kind not in kinds:
            raise NodeError(f"unknown {self.role} behaviour {self.kind!r}: expected one of {', '.join(kinds)}")

    def _noise(self, r: int, base: dict[str, IntArray], scale: float) -> dict[str, IntArray]:
        rng = np.random.default_rng([self.seed, r])
        return {k: np.asarray(np.round(rng.normal(0.0, scale, v.shape)), dtype=np.int64) for k, v in base.items()}

    def __call__(self, peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        if self.role == "poisoner":
            return _clip(self._poison(peer, r, base))
        return _clip(self._free_ride(peer, r, base))

    def _poison(self, peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        if self.kind == "label-flip":
            flipped = replace(peer.data, y=1.0 - peer.data.y)
            return peer.trained_update(r, base, flipped)
        if self.kind == "backdoor":
            update = peer.trained_update(r, base, backdoored(peer.data, seed=self.seed))
            return {k: v * BOOST for k, v in update.items()}
        honest = peer.trained_update(r, base)
        if self.kind == "sign-flip":
            return {k: -v for k, v in honest.items()}
        if self.kind == "scale":
            return {k: v * BOOST for k, v in honest.items()}
        return self._noise(r, base, 3 * _rms(honest))

    def _free_ride(self, peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        if self.kind == "zero":
            return {k: np.zeros_like(v) for k, v in base.items()}
        if self.kind == "noise":
            return self._noise(r, base, float(to_fixed(np.array(0.01))))
        if self.kind == "stale":
            if self._first is None:
                self._first = peer.trained_update(r, base)
            return self._first
        last, self._last_base = self._last_base, base
        if last is None:
            return {k: np.zeros_like(v) for k, v in base.items()}
        return {k: base[k] - last[k] for k in base}


@dataclass(frozen=True)
class Liar:
    """A colluding evaluator: call it as the peer's `make_evaluation`. `friends` are member indices."""

    friends: frozenset[int]

    def __call__(self, peer: Peer, r: int, honest: IntArray) -> IntArray:
        lie = np.array([EVAL_SCALE if i in self.friends else -EVAL_SCALE for i in range(len(honest))], dtype=np.int64)
        return np.where(honest == ABSTAIN, ABSTAIN, lie)
