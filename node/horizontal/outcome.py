"""What a round's checked updates give: the new model, the score vector and the rejections.

The peer and `fedchain audit verify` both call `round_outcome`, so a verifier
re-runs exactly what peers ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from node.core.codec import MAX_ABS, IntArray
from node.core.scoring import contribution_scores
from node.core.valuation import Valuation
from node.horizontal.exchange import FetchedUpdate
from node.horizontal.spec import NodeSpec

__all__ = ["Outcome", "round_outcome"]

COPIES_LAST_STEP = "copies the last global step"


@dataclass(frozen=True)
class Outcome:
    """The model and scores an honest peer votes for, and why each unusable update was left out.

    `rejected` maps a member's address to its reason, for every update that was
    fetched but not used (unavailable, malformed, duplicated, replayed, or a copy of
    the last global step). `used` counts the updates aggregated.
    """

    model: dict[str, IntArray]
    scores: list[int]
    rejected: dict[str, str] = field(default_factory=dict)
    used: int = 0
    valuation: Valuation | None = None  # when scoring by evaluation: how the previous round's scores came


def round_outcome(
    nspec: NodeSpec,
    base: dict[str, IntArray],
    fetched: list[FetchedUpdate],
    members: list[str],
    previous: dict[str, IntArray] | None = None,
    evaluated: int = 0,
) -> Outcome:
    """The new model and the score vector a round's checked updates give: what an honest peer votes for.

    `previous` is the global model before `base` (None if `base` is the initial model):
    an update equal to the last global step, `base - previous`, is public work copied,
    and is rejected. Scores are `node.core.scoring.contribution_scores` of the usable updates,
    placed at each member's index (join order); members without a usable update score 0.
    When the spec scores by evaluation, the scores are instead the previous round's
    `evaluated` members' value (`node.core.valuation`), from the evaluations that came with
    this round's usable updates. `fetched` is not modified.
    """
    rejected = {f.member: f.reason for f in fetched if f.update is None}
    if previous is not None:
        step = {k: base[k] - previous[k] for k in base}
        for f in fetched:
            if f.update is not None and all(np.array_equal(f.update[k], step[k]) for k in step):
                rejected[f.member] = COPIES_LAST_STEP
    good = [f.update for f in fetched if f.update is not None and f.member not in rejected]
    if not good:
        return Outcome(base, [0] * len(members), rejected, 0)
    agg = nspec.aggregate(good)
    model = {k: np.clip(base[k] + agg[k], -MAX_ABS, MAX_ABS) for k in base}
    if nspec.evaluates:
        index = {m.lower(): i for i, m in enumerate(members)}
        vectors = {
            index[f.member.lower()]: f.evaluation
            for f in fetched
            if f.update is not None
            and f.member not in rejected
            and f.evaluation is not None
            and f.member.lower() in index
        }
        value = Valuation(vectors, evaluated)
        scores = value.scores + [0] * (len(members) - evaluated)
        return Outcome(model, scores[: len(members)], rejected, len(good), value)
    usable = [None if f.update is None or f.member in rejected else nspec.flatten(f.update) for f in fetched]
    by_member = dict(zip((f.member.lower() for f in fetched), contribution_scores(usable), strict=True))
    return Outcome(model, [by_member.get(m.lower(), 0) for m in members], rejected, len(good))
