"""The two roles of a vertical task after alignment: a feature party and the task owner.

A feature party turns a batch's sample ids into an embedding message
(`node.vertical.messages`) and takes the gradient back; the owner takes one
embedding per party (or None for a party that went silent or sent something
malformed: its embedding is then a constant, the mean of what it sent over the
last epoch it completed) and returns one gradient message per party. Decoding
and checking what arrives (shape, values), sealing, storing and committing the
messages is the carrier's job (`node.vertical.node`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from node.errors import NodeError
from node.learn.data import Schema, encode_features
from node.learn.model import auc
from node.vertical.data import PartyData
from node.vertical.messages import encode_matrix
from node.vertical.psi import Alignment
from node.vertical.shapley import shapley
from node.vertical.split import Bottom, SplitSpec, Top, party_seed

__all__ = ["Embeddings", "FeatureParty", "OwnerParty", "encode_party"]

Embeddings = Mapping[str, "npt.NDArray[np.float32] | None"]  # party -> its embedding of the rows (None: none)


def encode_party(data: PartyData, schema: Schema) -> npt.NDArray[np.float32]:
    """The party's rows encoded with its columns' part of the task schema."""
    col = {c: i for i, c in enumerate(data.columns)}
    x, _, _ = encode_features(data.source, col, data.rows, schema)
    return x


class FeatureParty:
    """A party holding columns but no labels: its bottom model over its aligned rows."""

    def __init__(self, name: str, x: npt.NDArray[np.float32], alignment: Alignment, spec: SplitSpec) -> None:
        self.name = name
        self._x = x
        self._rows = alignment.rows
        self.bottom = Bottom(x.shape[1], spec, party_seed(spec.seed, name))

    def _batch(self, sample_ids: Sequence[bytes]) -> npt.NDArray[np.float32]:
        try:
            return self._x[[self._rows[s] for s in sample_ids]]
        except KeyError:
            raise NodeError(f"{self.name}: a batch names a row outside the alignment") from None

    def forward(self, sample_ids: Sequence[bytes]) -> bytes:
        """The embedding message of a training batch."""
        return encode_matrix(self.bottom.forward(self._batch(sample_ids)))

    def backward(self, grad: npt.NDArray[np.float32]) -> None:
        """Take the owner's gradient (checked) for the batch just sent, and step."""
        self.bottom.backward(grad)

    def embed(self, sample_ids: Sequence[bytes]) -> bytes:
        """The embedding message of rows to score (validation, test): no training."""
        return encode_matrix(self.bottom.embed(self._batch(sample_ids)))


class OwnerParty:
    """The task owner: its columns, the labels, and the top model over the parties' embeddings."""

    def __init__(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.float32],
        alignment: Alignment,
        parties: Sequence[str],
        spec: SplitSpec,
    ) -> None:
        self.parties = list(parties)
        self._x, self._y, self._rows = x, y, alignment.rows
        self.top = Top(x.shape[1], len(self.parties), spec, party_seed(spec.seed, "owner"))
        self.fallback = {p: np.zeros(spec.embed, dtype=np.float32) for p in self.parties}
        self.sums = {p: np.zeros(spec.embed, dtype=np.float64) for p in self.parties}
        self.counts = dict.fromkeys(self.parties, 0)
        self.silent: set[str] = set()

    def rows(self, sample_ids: Sequence[bytes]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        index = [self._rows[s] for s in sample_ids]
        return self._x[index], self._y[index]

    def _embeddings(self, sample_ids: Sequence[bytes], got: Embeddings, track: bool) -> list[npt.NDArray[np.float32]]:
        out = []
        for p in self.parties:
            e = None if p in self.silent else got.get(p)
            if e is None:
                out.append(np.tile(self.fallback[p], (len(sample_ids), 1)))
                continue
            if track:
                self.sums[p] += e.sum(axis=0, dtype=np.float64)
                self.counts[p] += len(e)
            out.append(e)
        return out

    def step(self, sample_ids: Sequence[bytes], got: Embeddings) -> tuple[float, dict[str, bytes]]:
        """One training step: the loss, and a gradient message for each party that sent an embedding."""
        x, y = self.rows(sample_ids)
        embeddings = self._embeddings(sample_ids, got, track=True)
        loss, grads = self.top.step(x, embeddings, y)
        out = {}
        for p, g in zip(self.parties, grads, strict=True):
            if p not in self.silent and got.get(p) is not None:
                out[p] = encode_matrix(g)
        return loss, out

    def close_epoch(self) -> None:
        """End an epoch: each party's fallback becomes its mean embedding over the epoch."""
        for p in self.parties:
            if self.counts[p]:
                self.fallback[p] = (self.sums[p] / self.counts[p]).astype(np.float32)
            self.sums[p][:] = 0
            self.counts[p] = 0

    def scores(self, sample_ids: Sequence[bytes], got: Embeddings) -> npt.NDArray[np.float64]:
        """Scores of rows from the parties' embeddings of the same rows (None: the fallback)."""
        x, _ = self.rows(sample_ids)
        return self.top.scores(x, self._embeddings(sample_ids, got, track=False))

    def auc(self, sample_ids: Sequence[bytes], got: Embeddings) -> float:
        _, y = self.rows(sample_ids)
        return auc(y, self.scores(sample_ids, got))

    def value(
        self, sample_ids: Sequence[bytes], got: Embeddings
    ) -> tuple[dict[str, float], dict[frozenset[str], float]]:
        """Each party's Shapley value on rows `sample_ids` (the validation rows): a coalition's value is
        the AUC with every party outside it masked by its fallback (its mean training embedding)."""
        x, y = self.rows(sample_ids)
        embeddings = dict(zip(self.parties, self._embeddings(sample_ids, got, track=False), strict=True))
        masked = {p: np.tile(self.fallback[p], (len(sample_ids), 1)) for p in self.parties}

        def value(coalition: frozenset[str]) -> float:
            inputs = [embeddings[p] if p in coalition else masked[p] for p in self.parties]
            return auc(y, self.top.scores(x, inputs))

        return shapley([p for p in self.parties if p not in self.silent], value)
