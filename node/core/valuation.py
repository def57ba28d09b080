"""Value scores: what each member's update was worth to the others, by peer evaluation.

As in BlockFLow (Mugunthan et al. 2020): in round r+1 every member evaluates
each usable update of round r, applied alone to round r's base model, on its own
private rows, and publishes the vector of AUC gains inside its committed round
r+1 content (so it is hashed, revealed and bound to round, sender and contract
like the update). Round r's scores are then a deterministic function of those
revealed vectors, so every honest peer votes the same integers and `fedchain
audit verify` recomputes them; rewards lag one round.

The rule, in integers (an evaluation is an AUC gain times EVAL_SCALE):

- **contribution** of member i: the lower median of the evaluations of i by every
  other evaluator (never its own; abstentions left out), and 0 if that is not
  positive, or if fewer than half of the other evaluators rated it. Honest
  evaluators abstain on an update that was not usable (and on every update of a
  round that failed), so a pair that skipped the work and rated each other +1
  earns nothing. A third of the evaluators lying low for a rival or high for a
  friend move the lower median only to another honest evaluator's value; with
  fewer than four members there is no such margin (with two raters the lower
  median is the lower rating, so one liar decides).
- **evaluator quality** q_j: how far j's vector lies from the consensus (each
  entry's contribution before the cut at 0): d_j is the median absolute
  departure, and D the lower median of every evaluator's d. Up to 2D counts as
  honest disagreement (different rows see different gains) and keeps q = SCALE;
  beyond it q = SCALE * 2D / d_j, so an evaluator that departs k times further
  keeps 2/k of its pay. A member that evaluated nothing it could (no vector, or
  every entry an abstention) has q = 0: evaluating is part of the work.
- **score** of i: contribution_i * q_i / SCALE, and 0 below MIN_GAIN (an AUC
  gain of 0.001). The contract shares the round's reward in proportion, among
  members who voted; without the floor, in a round where honest gains are all
  within noise of 0, a sliver of a score (a colluder's friend's, lifted by its
  friends' votes, say) would take the whole round's reward.

Known limits (docs/protocol.md): one update evaluated alone is a noisy proxy of
what it adds to the aggregate; after the first rounds, single updates barely
move AUC and most rounds pay few members or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from node.core.codec import MAX_ABS, IntArray

__all__ = ["ABSTAIN", "EVAL_SCALE", "MIN_GAIN", "SCALE", "Valuation", "abstentions", "valid_evaluation"]

EVAL_SCALE = 1_000_000  # an AUC gain of 1.0
ABSTAIN = -MAX_ABS  # no evaluation of this member (itself, a rejected update, a one-class evaluator)
SCALE = 10_000  # quality 1.0
MIN_GAIN = 1_000  # a score under an AUC gain of 0.001 is noise, and earns nothing
TOLERANCE = 2  # departures up to this many times the typical one are honest disagreement


def valid_evaluation(vector: IntArray, n: int) -> bool:
    """Whether `vector` is an evaluation of `n` members: each entry ABSTAIN or a gain in [-1, 1]."""
    if vector.shape != (n,):
        return False
    ok = (vector == ABSTAIN) | ((vector >= -EVAL_SCALE) & (vector <= EVAL_SCALE))
    return bool(ok.all())


def _lower_median(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


class Valuation:
    """The scores of `n` members from the evaluations of several evaluators, with the parts that make them."""

    def __init__(self, evaluations: Mapping[int, IntArray], n: int) -> None:
        """`evaluations` maps an evaluator's member index to its vector (checked by `valid_evaluation`)."""
        self.n = n
        rows = {j: [int(x) for x in v] for j, v in sorted(evaluations.items()) if valid_evaluation(v, n)}
        self.consensus: list[int | None] = []
        for i in range(n):
            given = [row[i] for j, row in rows.items() if j != i and row[i] != ABSTAIN]
            others = sum(1 for j in rows if j != i)
            self.consensus.append(_lower_median(given) if given and 2 * len(given) >= others else None)
        self.contribution = [max(0, c) if c is not None else 0 for c in self.consensus]
        self.departure: dict[int, int] = {}
        for j, row in rows.items():
            gaps = [
                abs(row[i] - c) for i, c in enumerate(self.consensus) if i != j and c is not None and row[i] != ABSTAIN
            ]
            if gaps:
                self.departure[j] = _lower_median(gaps)
        typical = _lower_median(list(self.departure.values())) if self.departure else 0
        self.quality = [self._quality(self.departure.get(j), typical) for j in range(n)]
        scores = [self.contribution[i] * self.quality[i] // SCALE for i in range(n)]
        self.scores = [s if s >= MIN_GAIN else 0 for s in scores]

    @staticmethod
    def _quality(departure: int | None, typical: int) -> int:
        if departure is None:
            return 0
        if departure <= TOLERANCE * typical:
            return SCALE
        return SCALE * TOLERANCE * typical // departure


def abstentions(n: int) -> IntArray:
    """A vector that evaluates none of `n` members."""
    return np.full(n, ABSTAIN, dtype=np.int64)
