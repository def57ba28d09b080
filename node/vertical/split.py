"""Split learning: each feature party's bottom model, the owner's top model, and the batches they share.

A feature party's bottom model maps its own columns of a batch to an embedding
(`embed` values per row), which it sends the owner. The owner's top model scores
its own columns next to every party's embedding, computes the loss on its
labels, steps, and sends each party the gradient of the loss with respect to
that party's embedding; the party back-propagates it through its bottom model
and steps. No party sees another's columns, and only the owner sees labels.

- `logreg`: bottoms are linear maps and the top is a linear layer, so the whole
  model is a logistic regression over every party's columns.
- `mlp`: bottoms and top each have one hidden ReLU layer.

Every party derives the same batches from the task seed and the sample ids
(`Batches`): which aligned rows are for training, validation and test, and the
order of each epoch. Models are initialised from a seed per party, so a run is
deterministic given the seeds, like the horizontal rounds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from node.errors import NodeError
from node.vertical.limits import FALLBACKS

__all__ = ["Batches", "Bottom", "SplitSpec", "Top", "party_seed"]

_KINDS = ("logreg", "mlp")


@dataclass(frozen=True)
class SplitSpec:
    """The model and its training, fixed by the task spec."""

    kind: str = "logreg"
    embed: int = 4
    hidden: int = 16
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 0.05
    seed: int = 0
    test_share: float = 0.2
    valid_share: float = 0.1
    fallback: str = "mean"  # scoring without a party's embedding: node.vertical.limits.FALLBACKS

    @classmethod
    def from_spec(cls, table: Mapping[str, Any]) -> SplitSpec:
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(table) - fields)
        if unknown:
            raise NodeError(f"spec [vertical.model]: unknown keys {unknown}")
        spec = cls(**dict(table))
        if spec.kind not in _KINDS:
            raise NodeError(f"spec [vertical.model] kind = {spec.kind!r}: expected 'logreg' or 'mlp'")
        if spec.fallback not in FALLBACKS:
            raise NodeError(f"spec [vertical.model] fallback = {spec.fallback!r}: expected 'mean' or 'none'")
        if min(spec.embed, spec.hidden, spec.epochs, spec.batch_size) < 1 or spec.lr <= 0:
            raise NodeError(f"spec [vertical.model] is invalid: {spec}")
        if not (0 < spec.test_share < 1 and 0 < spec.valid_share < 1 and spec.test_share + spec.valid_share < 1):
            raise NodeError("spec [vertical.model]: test_share and valid_share must be in (0, 1) and sum below 1")
        return spec


def party_seed(seed: int, name: str) -> int:
    """A party's own seed (its initial weights), from the task seed and its name."""
    return int.from_bytes(hashlib.sha256(b"fedchain/vertical/%d/%s" % (seed, name.encode())).digest()[:8], "big") >> 1


def _bucket(seed: int, sample_id: bytes) -> float:
    digest = hashlib.sha256(b"fedchain/vertical/split/%d/" % seed + sample_id).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Batches:
    """The aligned sample ids split into training, validation and test rows (by a hash of the task seed
    and each id, so every party computes the same split), and each epoch's training batches."""

    train: list[bytes]
    valid: list[bytes]
    test: list[bytes]
    batch_size: int
    seed: int

    @classmethod
    def of(cls, sample_ids: Sequence[bytes], spec: SplitSpec) -> Batches:
        buckets = {s: _bucket(spec.seed, s) for s in sorted(sample_ids)}
        test = [s for s, b in buckets.items() if b < spec.test_share]
        valid = [s for s, b in buckets.items() if spec.test_share <= b < spec.test_share + spec.valid_share]
        train = [s for s, b in buckets.items() if b >= spec.test_share + spec.valid_share]
        if not train or not valid or not test:
            raise NodeError(f"{len(sample_ids)} aligned rows are too few to split into training, validation and test")
        return cls(train, valid, test, spec.batch_size, spec.seed)

    def epoch(self, epoch: int) -> list[list[bytes]]:
        """Epoch `epoch`'s training batches: the training rows in a seeded random order, sliced."""
        order = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(len(self.train))
        rows = [self.train[i] for i in order]
        return [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]


def _net(n_in: int, n_out: int, spec: SplitSpec) -> torch.nn.Module:
    if spec.kind == "logreg":
        return torch.nn.Linear(n_in, n_out)
    return torch.nn.Sequential(torch.nn.Linear(n_in, spec.hidden), torch.nn.ReLU(), torch.nn.Linear(spec.hidden, n_out))


class Bottom:
    """A feature party's model over its own columns: embeddings out, gradients in."""

    def __init__(self, n_features: int, spec: SplitSpec, seed: int) -> None:
        torch.manual_seed(seed)
        self.net = _net(n_features, spec.embed, spec)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=spec.lr)
        self._pending: torch.Tensor | None = None

    def forward(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The embedding of a training batch (kept until its gradient comes back)."""
        self.net.train()
        self._pending = self.net(torch.from_numpy(x))
        out: npt.NDArray[np.float32] = self._pending.detach().numpy().copy()
        return out

    def backward(self, grad: npt.NDArray[np.float32]) -> None:
        """Step on the gradient of the loss with respect to the last embedding sent."""
        if self._pending is None:
            raise NodeError("a gradient arrived for no embedding sent")
        self.opt.zero_grad()
        torch.autograd.backward(self._pending, torch.from_numpy(grad))
        self.opt.step()
        self._pending = None

    def embed(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Embeddings for scoring (no training)."""
        self.net.eval()
        with torch.no_grad():
            out: npt.NDArray[np.float32] = self.net(torch.from_numpy(x)).numpy().copy()
        return out


class Top:
    """The owner's model: its own columns and one embedding per feature party in, a score out."""

    def __init__(self, n_own: int, n_parties: int, spec: SplitSpec, seed: int) -> None:
        torch.manual_seed(seed)
        self.net = _net(n_own + n_parties * spec.embed, 1, spec)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=spec.lr)
        self.loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(
        self, x: npt.NDArray[np.float32], embeddings: Sequence[npt.NDArray[np.float32]], y: npt.NDArray[np.float32]
    ) -> tuple[float, list[npt.NDArray[np.float32]]]:
        """One training step on a batch; returns the loss and each party's embedding gradient."""
        self.net.train()
        inputs = [torch.from_numpy(e).requires_grad_(True) for e in embeddings]
        self.opt.zero_grad()
        logits = self.net(torch.cat([torch.from_numpy(x), *inputs], dim=1)).squeeze(1)
        loss = self.loss_fn(logits, torch.from_numpy(y))
        loss.backward()
        self.opt.step()
        grads = [
            t.grad.numpy().copy() if t.grad is not None else np.zeros_like(e)
            for t, e in zip(inputs, embeddings, strict=True)
        ]
        return float(loss.item()), grads

    def scores(
        self, x: npt.NDArray[np.float32], embeddings: Sequence[npt.NDArray[np.float32]]
    ) -> npt.NDArray[np.float64]:
        """Logits for rows `x` with the parties' embeddings of the same rows."""
        self.net.eval()
        with torch.no_grad():
            out = self.net(torch.cat([torch.from_numpy(x), *(torch.from_numpy(e) for e in embeddings)], dim=1))
        result: npt.NDArray[np.float64] = out.squeeze(1).double().numpy()
        return result
