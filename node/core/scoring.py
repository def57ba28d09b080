"""Contribution scores: what each revealed update earns, computed alike by every honest peer.

A round's scores go into the vote (they are part of the proposal id), so they
must be a deterministic function of public data: the round's revealed updates
in canonical order (members sorted by address), as fixed-point integers.

The rule, *peer agreement*: for every pair of accepted updates (deltas from the
round's base model) a_ij = max(0, <d_i, d_j>) / max(|d_i|^2, |d_j|^2). That is
the cosine of the two deltas times the ratio of the shorter length to the longer:
1 for identical updates, 0 for orthogonal or opposed ones, 1/k for an update
boosted k times. A member's score is the lower median of its agreements with
every other accepted update, squared, times SCALE: a_ij^2 is the share of one
update's energy along the other (cos^2) times the energy ratio, and squaring
starves chance alignments (a random vector among 50 parameters meets an honest
one at cos ~ 0.14) while consistent contributors keep most of their pay. So an
update earns only when more than half of the others point the same way at a
similar size:

- rejected (unavailable, malformed, duplicated) and zero updates score 0;
- an update replayed from an earlier round (its content hash was revealed
  before) scores 0;
- noise is nearly orthogonal to everything: its agreements scatter around 0
  and their median is close to 0 (and falls below the noise floor, see below);
- sign flips and label flips point against the honest majority: 0;
- boosted updates (scaling, model-replacement backdoors) are cut by the length
  ratio: 1/k^2 for a boost of k;
- honest updates with similar label mixes agree with each other, as long as
  honest members are a majority of the round (under a strong label skew they
  do not, and the minority's direction earns nothing: docs/protocol.md).

Agreements below NOISE_FLOOR (0.05) count as 0, and a median agreement below
MIN_AGREEMENT (0.1) earns nothing: near convergence honest updates become mostly
minibatch noise and stop agreeing, and since the contract shares a round's
reward among its positive scores, a round where nobody clearly contributed
would otherwise hand a lucky noise update a large slice. Such a round pays
nobody; its reward stays in the pool. Known limits (docs/protocol.md): a minority of honest members with
data unlike everyone else's earns less; an attacker whose update looks like
honest training (an unboosted backdoor, or a copy of public updates with small
changes) cannot be told apart by geometry; colluding attackers that are a
majority of a round agree with each other.

Every product is taken after one right shift, the same for the whole round,
chosen so that a sum of squares stays inside int64: exact, in any order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from node.core.codec import IntArray

__all__ = ["MIN_AGREEMENT", "NOISE_FLOOR", "SCALE", "SCORINGS", "agreements", "contribution_scores"]

# A spec's [scoring] rule: peer agreement (this module), or peer evaluation of value (node.core.valuation).
SCORINGS = ("agreement", "evaluation")

SCALE = 10_000
NOISE_FLOOR = 500  # agreements under 0.05 are noise
MIN_AGREEMENT = 1_000  # a member whose median agreement is under 0.1 earns nothing this round


def _shift(u: IntArray) -> int:
    """Right shift after which n_params squared values sum inside int64."""
    peak = int(np.abs(u).max(initial=0))
    budget = 62 - max(1, u.shape[1]).bit_length()
    return int(max(0, (2 * peak.bit_length() - budget + 1) // 2))


def agreements(flat: IntArray) -> list[list[int]]:
    """Pairwise agreement a_ij * SCALE (integers) of the rows of `flat`; diagonal SCALE for nonzero rows."""
    v = np.right_shift(flat, _shift(flat))
    gram = [[int(x) for x in row] for row in np.einsum("ip,jp->ij", v, v, dtype=np.int64)]
    n = len(gram)
    out = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            top = max(gram[i][i], gram[j][j])
            if top > 0 and gram[i][j] > 0:
                a = SCALE * gram[i][j] // top
                out[i][j] = a if a >= NOISE_FLOOR else 0
    return out


def contribution_scores(updates: Sequence[IntArray | None]) -> list[int]:
    """Scores (0..SCALE): the squared lower median of each update's agreements; None marks a rejected update."""
    kept = [i for i, u in enumerate(updates) if u is not None]
    scores = [0] * len(updates)
    if not kept:
        return scores
    agree = agreements(np.stack([np.asarray(updates[i], dtype=np.int64) for i in kept]))
    for r, member in enumerate(kept):
        others = sorted(a for c, a in enumerate(agree[r]) if c != r)
        if others:
            median = others[(len(others) - 1) // 2]
            scores[member] = median * median // SCALE if median >= MIN_AGREEMENT else 0
        else:  # a lone update: nothing to agree with; it earns if it is not empty
            scores[member] = SCALE if agree[r][r] > 0 else 0
    return scores
