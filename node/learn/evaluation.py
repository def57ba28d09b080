"""A member's evaluation of others' updates on its own rows: the input of value scores.

Each update is applied alone to the round's base model; the entry is the AUC
gain on the evaluator's rows over the base model, times EVAL_SCALE, rounded
(`node.core.valuation` turns the evaluators' vectors into scores). The rows never
leave the company; only the vector is published.

AUC ignores scale, so a boosted update (an honest one multiplied k times: the
scaling and model-replacement poisons) would be valued for its direction while
it wrecks an average, and a tiny random one (a free rider's noise) is a lottery
ticket: from the all-zero initial model, base + d ranks rows by d alone, and a
random d ranks some evaluators' rows better than chance. A positive gain is
therefore cut by the update's size against the round's, m the median length of
the round's usable updates: by (SIZE_TOLERANCE * m / |d|)^2 above
SIZE_TOLERANCE * m, by (SIZE_TOLERANCE * |d| / m)^2 below m / SIZE_TOLERANCE.
Honest updates measured on the bundled data lie between 0.24 and 2.75 times the
median (fewer or more rows, fewer or more optimizer steps: the smallest keeps
half its value); a 10x boost keeps about 1/10 of its value or less, and noise at
a sixth of an honest update's length about a quarter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from node.core.codec import MAX_ABS, IntArray
from node.core.valuation import EVAL_SCALE, abstentions
from node.learn.data import Dataset
from node.learn.model import ModelSpec, auc, predict

__all__ = ["SIZE_TOLERANCE", "evaluate_updates"]

SIZE_TOLERANCE = 3.0  # an update up to this many times the median length keeps its whole value


def _length(update: Mapping[str, IntArray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(v.astype(np.float64)))) for v in update.values()))


def _size_factor(length: float, median: float) -> float:
    """1 within a factor SIZE_TOLERANCE of the median length, falling with the square of the ratio beyond."""
    if length > SIZE_TOLERANCE * median:
        return float((SIZE_TOLERANCE * median / length) ** 2)
    if length * SIZE_TOLERANCE < median:
        return float((SIZE_TOLERANCE * length / median) ** 2)
    return 1.0


def evaluate_updates(
    spec: ModelSpec,
    base: Mapping[str, IntArray],
    updates: Mapping[int, Mapping[str, IntArray]],
    data: Dataset,
    n: int,
    own: int | None = None,
) -> IntArray:
    """A vector over `n` members: entry i the AUC gain on `data` of `base` + `updates[i]` over `base` (a positive
    gain cut by the size factor), in [-EVAL_SCALE, EVAL_SCALE]. ABSTAIN for `own` (the evaluator's index; its
    update still counts in the median length), for members not in `updates`, and everywhere if `data` has one
    class."""
    out = abstentions(n)
    before = auc(data.y, predict(spec, base, data.x))
    if math.isnan(before) or not updates:
        return out
    median = float(np.median([_length(u) for u in updates.values()]))
    for i, update in sorted(updates.items()):
        if i == own:
            continue
        moved = {k: np.clip(base[k] + update[k], -MAX_ABS, MAX_ABS) for k in base}
        gain = auc(data.y, predict(spec, moved, data.x)) - before
        length = _length(update)
        if gain > 0:
            gain *= _size_factor(length, median)
        out[i] = int(np.clip(round(gain * EVAL_SCALE), -EVAL_SCALE, EVAL_SCALE))
    return out
