"""A company's own model: chosen on its own rows among what the federation makes possible.

The federation agrees on one shared model; a company may serve its own
customers better with something built from it. The candidates:

- `global`: the federation's model as agreed;
- `fine-tuned`: the global model after one more round of local training;
- `local`: the company's own model, trained alone for as many rounds as the
  federation had (what it would have without joining);
- `blend W`: the global model's score weighted W plus the local model's
  weighted 1 - W (both are logits), for W in 0.25, 0.5, 0.75.

Which one is chosen is decided on the company's own training rows only, never
on rows it keeps for testing, by stratified k-fold cross-validation: each fold
in turn is held out, the fine-tuned and local candidates are trained on the
other folds, and every candidate scores the held-out rows. A candidate's gain
is the mean over folds of its AUC on the fold minus the local model's. A gain
measured on a few hundred rows is noisy, so the choice is the candidate whose
gain is largest *after subtracting its spread* (`Z` standard deviations of
the gain over stratified bootstrap resamples within each fold, seeded): a
candidate that looks better only by chance does not displace the local model,
and a blend (whose scores stay close to the local model's) wins where a pure
switch is too uncertain. The local model's bound is 0. This is a trade: a
lower `Z` takes more of the federation's gains and more losses; what the
choice gives on test rows it never saw is measured in
`bench/results/accuracy.md` (some companies still end worse than alone, within
their test rows' noise).

The folds keep the company's share of positives in each (stratified); with few
positives there are fewer folds (never more than the positives or negatives,
so every fold holds both classes). A company with fewer than 2 rows of either
class cannot validate anything: it uses the global model, and says so.

What tilts the comparison, and which way: the global model has seen the
company's rows (it was trained on them, among everyone's), so its held-out AUC
is slightly optimistic; the local and fine-tuned candidates are validated after
training on (k-1)/k of the rows but refitted on all of them, so theirs is
slightly pessimistic. Both favour the global model a little.

The chosen model is then refitted on all the company's rows (the fine-tuned and
local parts); its parts are local to the company and never enter aggregation or
scoring. It is saved as numpy arrays and JSON (with the arrays' SHA-256),
never pickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ledger.files import write_atomic
from node.core.codec import IntArray
from node.errors import NodeError
from node.learn.data import Dataset
from node.learn.model import ModelSpec, TrainConfig, auc, predict, train_rounds

__all__ = [
    "BLENDS",
    "FOLDS",
    "Z",
    "Candidate",
    "LocalFolds",
    "PersonalModel",
    "choose",
    "compare_to_local",
    "gain_spreads",
    "local_folds",
    "refit",
    "weighted_aucs",
]

FOLDS = 3  # cross-validation folds, fewer when a class has fewer rows
Z = 2.0  # standard deviations of a candidate's gain subtracted before comparing
BOOTSTRAP = 100  # stratified resamples of the held-out rows to measure a gain's spread
BLENDS = (0.25, 0.5, 0.75)  # the global model's weight in a blend with the local one
_CHUNK = 20  # resamples weighed at once

Scores = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Candidate:
    """A candidate's cross-validated AUC, its gain over the local model, and the gain's spread."""

    name: str
    auc: float
    gain: float
    spread: float

    @property
    def bound(self) -> float:
        """The gain less `Z` spreads: what the choice compares (0 for the local model itself)."""
        return self.gain - Z * self.spread


@dataclass(frozen=True)
class PersonalModel:
    """What a company uses: `weight` x federated score + (1 - weight) x local score.

    `choice` names the candidate; `federated` holds the global (or fine-tuned) model's parameters,
    `local` the company's own ones (None when the choice does not use them).
    """

    choice: str
    weight: float
    federated: dict[str, IntArray]
    local: dict[str, IntArray] | None
    candidates: tuple[Candidate, ...] = ()
    folds: int = 0
    rows: int = 0
    positives: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def scores(self, spec: ModelSpec, x: npt.NDArray[np.float32]) -> Scores:
        """Scores (logits, higher means more likely positive) for rows `x`."""
        out = predict(spec, self.federated, x) if self.weight > 0 else np.zeros(len(x))
        if self.local is not None and self.weight < 1:
            out = self.weight * out + (1 - self.weight) * predict(spec, self.local, x)
        return out

    def describe(self) -> dict[str, Any]:
        """The choice and its evidence, for reports and JSON (no parameters)."""
        return {
            "choice": self.choice,
            "weight": self.weight,
            "folds": self.folds,
            "validation_rows": self.rows,
            "validation_positives": self.positives,
            "note": self.note,
            "candidates": [{**asdict(c), "bound": c.bound} for c in self.candidates],
            **self.extra,
        }

    def save(self, path: Path) -> None:
        """Write `path`.npz (the parameters) and `path`.json (the choice, its evidence and the .npz's
        SHA-256), each atomically; `load` refuses a pair that does not match."""
        arrays = {f"federated/{k}": v for k, v in self.federated.items()}
        arrays.update({f"local/{k}": v for k, v in (self.local or {}).items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        blob = buf.getvalue()
        write_atomic(path.with_suffix(".npz"), blob)
        meta = {**self.describe(), "parameters_sha256": hashlib.sha256(blob).hexdigest()}
        write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path, layout: Mapping[str, tuple[int, ...]] | None = None) -> PersonalModel:
        """Read what `save` wrote (never unpickling); `layout`, if given, is the shape every part must have."""
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            blob = path.with_suffix(".npz").read_bytes()
            if hashlib.sha256(blob).hexdigest() != meta["parameters_sha256"]:
                raise ValueError("the parameters do not match their record (written by another run?)")
            parts: dict[str, dict[str, IntArray]] = {"federated": {}, "local": {}}
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                for key in z.files:
                    part, name = key.split("/", 1)
                    value = z[key]
                    if value.dtype != np.int64:
                        raise ValueError(f"{key} holds {value.dtype}, not fixed-point int64")
                    parts[part][name] = value
            model = cls(
                str(meta["choice"]),
                float(meta["weight"]),
                parts["federated"],
                parts["local"] or None,
                tuple(Candidate(str(c["name"]), c["auc"], c["gain"], c["spread"]) for c in meta["candidates"]),
                int(meta["folds"]),
                int(meta["validation_rows"]),
                int(meta["validation_positives"]),
                str(meta["note"]),
                {k: v for k, v in meta.items() if k not in _DESCRIBED},
            )
            if not 0 <= model.weight <= 1 or (model.weight < 1 and model.local is None):
                raise ValueError(f"weight {model.weight} does not fit the parts saved")
            for part in (model.federated, model.local or {}):
                if layout is not None and {k: v.shape for k, v in part.items()} != dict(layout):
                    raise ValueError("the parameters do not fit the federation's model")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
            raise NodeError(f"{path}: not a saved personal model ({exc})") from exc
        return model


_DESCRIBED = (
    "choice",
    "weight",
    "folds",
    "validation_rows",
    "validation_positives",
    "note",
    "candidates",
    "parameters_sha256",
)


def _folds(y: npt.NDArray[np.float32], k: int, seed: int) -> npt.NDArray[np.int64]:
    """Stratified fold numbers 0..k-1: each class dealt round-robin in a seeded order."""
    rng = np.random.default_rng([seed, 13])
    fold = np.zeros(len(y), dtype=np.int64)
    for cls in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def weighted_aucs(y: npt.NDArray[np.float32], scores: Scores, weights: npt.NDArray[np.float64]) -> Scores:
    """AUC (ties counted half) of `scores` with each row counted `weights[b, row]` times, for every b:
    what `auc` gives on a resample holding each row that many times, in one sort."""
    order = np.argsort(scores, kind="mergesort")
    ranked, w = scores[order], weights[:, order]
    pos, neg = w * y[order], w * (1 - y[order])
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # groups of tied scores
    p, n = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
    below = np.cumsum(n, axis=1) - n
    out: Scores = (p * (below + 0.5 * n)).sum(axis=1) / (p.sum(axis=1) * n.sum(axis=1))
    return out


def _resamples(y: npt.NDArray[np.float32], rng: np.random.Generator, count: int) -> npt.NDArray[np.float64]:
    """`count` stratified bootstrap resamples of `y`'s rows, as how many times each row is drawn."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    return np.stack(
        [
            np.bincount(np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]), minlength=len(y))
            for _ in range(count)
        ]
    ).astype(np.float64)


def compare_to_local(
    y: npt.NDArray[np.float32], held: dict[str, Scores], fold: npt.NDArray[np.int64], seed: int
) -> dict[str, tuple[float, float, float]]:
    """Each candidate's (AUC, gain over `held["local"]`, spread of the gain), fold by fold.

    AUC and gain are means over the folds of each fold's own AUC (a fold's held-out scores come from
    one model, so they are never ranked against another fold's). The spread is the standard
    deviation of the fold-mean gain over `BOOTSTRAP` stratified resamples drawn within each fold
    (the same resamples for every candidate), taken in chunks to bound memory on large companies.
    A fold holding one class has no AUC: everything it touches is NaN.
    """
    rng = np.random.default_rng([seed, 17])
    folds = int(fold.max()) + 1
    aucs = {name: 0.0 for name in held}
    gains = {name: np.zeros(BOOTSTRAP) for name in held}
    for f in range(folds):
        idx = np.flatnonzero(fold == f)
        yf = y[idx]
        for name, s in held.items():
            aucs[name] += auc(yf, s[idx]) / folds
        if yf.min() == yf.max():
            gains = {name: np.full(BOOTSTRAP, np.nan) for name in held}
            continue
        for start in range(0, BOOTSTRAP, _CHUNK):
            weights = _resamples(yf, rng, min(_CHUNK, BOOTSTRAP - start))
            base = weighted_aucs(yf, held["local"][idx], weights)
            for name, s in held.items():
                gains[name][start : start + len(weights)] += (weighted_aucs(yf, s[idx], weights) - base) / folds
    return {name: (aucs[name], aucs[name] - aucs["local"], float(np.std(gains[name]))) for name in held}


def gain_spreads(y: npt.NDArray[np.float32], held: dict[str, Scores], seed: int) -> dict[str, float]:
    """Each candidate's standard deviation of AUC(candidate) - AUC(held["local"]) over stratified
    bootstrap resamples of all the rows (e.g. a company's test rows)."""
    return {name: v[2] for name, v in compare_to_local(y, held, np.zeros(len(y), dtype=np.int64), seed).items()}


@dataclass(frozen=True)
class LocalFolds:
    """The part of the choice that does not depend on the federation: the folds, the local candidate's
    held-out scores, and the local model trained on all rows."""

    data: Dataset
    seed: int
    fold: npt.NDArray[np.int64]
    held: Scores
    model: dict[str, IntArray]

    @property
    def folds(self) -> int:
        return int(self.fold.max()) + 1 if len(self.fold) else 0


def local_folds(
    spec: ModelSpec,
    training: TrainConfig,
    data: Dataset,
    rounds: int,
    seed: int = 0,
    folds: int = FOLDS,
) -> LocalFolds:
    """Cross-validate the local candidate (`rounds` rounds of training alone) on `data`, the company's
    training rows, and train it on all of them."""
    positives, negatives = int((data.y == 1).sum()), int((data.y == 0).sum())
    k = min(folds, positives, negatives)
    alone = train_rounds(spec, training, data, rounds)
    if k < 2:
        return LocalFolds(data, seed, np.zeros(0, dtype=np.int64), np.zeros(0), alone)
    fold, held = _folds(data.y, k, seed), np.zeros(len(data))
    for f in range(k):
        out = fold == f
        held[out] = predict(spec, train_rounds(spec, training, data.subset(np.flatnonzero(~out)), rounds), data.x[out])
    return LocalFolds(data, seed, fold, held, alone)


def choose(
    spec: ModelSpec, training: TrainConfig, global_params: Mapping[str, IntArray], local: LocalFolds
) -> PersonalModel:
    """The model this company should use: the candidate with the best bound on its held-out rows."""
    glob, data = dict(global_params), local.data
    positives = int((data.y == 1).sum())
    if local.folds < 2:
        note = "too few rows of a class to validate on: the global model"
        return PersonalModel("global", 1.0, glob, None, rows=len(data), positives=positives, note=note)
    held: dict[str, Scores] = {"global": predict(spec, glob, data.x), "fine-tuned": np.zeros(len(data))}
    for f in range(local.folds):
        out = local.fold == f
        fine = train_rounds(spec, training, data.subset(np.flatnonzero(~out)), 1, start=glob)
        held["fine-tuned"][out] = predict(spec, fine, data.x[out])
    held["local"] = local.held
    held.update({f"blend {w}": w * held["global"] + (1 - w) * local.held for w in BLENDS})
    candidates = tuple(
        Candidate(name, round(a, 4), round(gain, 4), round(spread, 4))
        for name, (a, gain, spread) in compare_to_local(data.y, held, local.fold, local.seed).items()
    )
    best = max(candidates, key=lambda c: (c.bound, c.name == "local"))
    return refit(spec, training, glob, local, best, candidates)


def refit(
    spec: ModelSpec,
    training: TrainConfig,
    global_params: Mapping[str, IntArray],
    local: LocalFolds,
    best: Candidate,
    candidates: tuple[Candidate, ...],
) -> PersonalModel:
    """The chosen candidate, its trained parts fitted on all of the company's rows."""
    glob, data = dict(global_params), local.data
    if best.name == "global":
        weight, federated, own = 1.0, glob, None
    elif best.name == "fine-tuned":
        weight, federated, own = 1.0, train_rounds(spec, training, data, 1, start=glob), None
    elif best.name == "local":
        weight, federated, own = 0.0, glob, local.model
    else:
        weight, federated, own = float(best.name.split()[1]), glob, local.model
    positives = int((data.y == 1).sum())
    return PersonalModel(best.name, weight, federated, own, candidates, local.folds, len(data), positives)
