"""Differential privacy for a member's local training: DP-SGD, and opacus's accountant for what it spends.

A spec's `[privacy]` table turns it on for every member:

    [privacy]
    epsilon = 3.0        # the budget: the most a member spends over the federation's life
    delta = 1e-5         # (default: 1e-5; must be below 1 / a member's rows)
    clip = 1.0           # each row's gradient is clipped to this L2 norm (default 1.0)
    noise = 1.1          # the noise multiplier; leave it out to solve for it (below)
    rounds = 10          # the rounds the budget must last when solving (default 10)
    accountant = "rdp"   # opacus's "rdp" or "prv" (default "rdp")

DP-SGD (Abadi et al. 2016) as opacus does it: each step takes every training
row with probability q = batch_size / rows (Poisson sampling), clips each row's
gradient to `clip`, adds Gaussian noise of standard deviation noise x clip to
their sum and divides by the expected batch size; the optimizer then steps on
that (post-processing). Per-row gradients come from `torch.func` (vmap of grad).
The sampling and the noise come from a cryptographic keystream (ChaCha20, from
`cryptography`) under a fresh random 256-bit key a round, never from torch's or
numpy's generators: those are Mersenne Twisters with a 32-bit seed in torch, so
another member could search the seed and subtract the noise from the update.

The accounting is opacus's (`RDPAccountant` or `PRVAccountant`, and
`get_noise_multiplier` to solve for the noise): each round a member trained is
`steps` steps of the subsampled Gaussian mechanism at its noise and sampling
rate (its `Mechanism`, kept per round, so a data file that changes size between
rounds is accounted as it was), and it has spent the epsilon the accountant
gives for that history at `delta`. Without `noise`, each member solves for the
noise that makes `rounds` rounds spend at most the budget on its own row count;
a member whose next round would spend more than `epsilon` stops submitting.

What this bounds: what any one row can change in what the member publishes (its
updates), and so in every model made from them, against anyone (other members,
an outsider reading the chain and IPFS). A customer with k rows gets a k times
weaker guarantee. What it does not bound: the spec's schema, the row count (the
sampling rate depends on it, as in opacus), and whatever the member publishes
outside its updates (an evaluation vector, when scoring by evaluation: refused
with DP). The Gaussian is drawn by Box-Muller in floating point, which leaks
through its low-order bits in theory (Mironov 2012; Jin et al. 2022); opacus's
own sampler has the same limit.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from node.core.codec import IntArray
from node.errors import NodeError
from node.learn.data import Dataset
from node.learn.model import ModelSpec, TrainConfig, fixed_params, load

__all__ = ["ACCOUNTANTS", "DPConfig", "DPTraining", "Keystream", "Mechanism", "onchain_epsilon", "train_private"]

# One round of DP-SGD as the accountant sees it: (noise multiplier, sampling rate, steps).
Mechanism = tuple[float, float, int]

ACCOUNTANTS = ("rdp", "prv")
MILLI = 1000  # epsilon goes on chain in thousandths, rounded up (uint32)
# The RDP orders the accountant tries (solving and reporting alike): opacus's defaults without the fractional
# ones but 1.5, which are slow series; 3 to 4 times faster, and the bound over fewer orders is a little looser
# (never tighter) than over all of them: the epsilon reported is an upper bound all the same.
ALPHAS: list[float] = [1.5, *range(2, 11), *range(12, 64)]


@dataclass(frozen=True)
class DPConfig:
    """The spec's `[privacy]` table."""

    epsilon: float
    delta: float = 1e-5
    clip: float = 1.0
    noise: float | None = None
    rounds: int = 10
    accountant: str = "rdp"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DPConfig | None:
        """The spec's `[privacy]` table, checked; None when the spec has none (no DP)."""
        table = spec.get("privacy")
        if table is None:
            return None
        if not isinstance(table, Mapping):
            raise NodeError("spec [privacy]: expected a table")
        unknown = sorted(set(table) - {"epsilon", "delta", "clip", "noise", "rounds", "accountant"})
        if unknown:
            raise NodeError(f"spec [privacy]: unknown key {unknown[0]!r}")
        if "epsilon" not in table:
            raise NodeError("spec [privacy]: epsilon (the budget) is required")
        try:
            cfg = cls(
                float(table["epsilon"]),
                float(table.get("delta", 1e-5)),
                float(table.get("clip", 1.0)),
                None if table.get("noise") is None else float(table["noise"]),
                int(table.get("rounds", 10)),
                str(table.get("accountant", "rdp")),
            )
        except (TypeError, ValueError) as exc:
            raise NodeError(f"spec [privacy]: {exc}") from None
        cfg.check()
        return cfg

    def check(self) -> None:
        bad = (
            "epsilon must be a positive number"
            if not (self.epsilon > 0 and math.isfinite(self.epsilon))
            else "delta must be between 0 and 1"
            if not 0 < self.delta < 1
            else "clip must be positive"
            if not (self.clip > 0 and math.isfinite(self.clip))
            else "noise must be positive"
            if self.noise is not None and not (self.noise > 0 and math.isfinite(self.noise))
            else "rounds must be at least 1"
            if self.rounds < 1
            else f"accountant {self.accountant!r}: expected one of {', '.join(ACCOUNTANTS)}"
            if self.accountant not in ACCOUNTANTS
            else ""
        )
        if bad:
            raise NodeError(f"spec [privacy]: {bad}")

    def spent(self, history: Sequence[Mechanism]) -> float:
        """The epsilon (at `delta`) of every round in `history`, by the spec's accountant; 0 for none."""
        merged: dict[tuple[float, float], int] = {}
        for noise, rate, steps in history:  # rounds of one mechanism compose as one run of all their steps
            merged[(noise, rate)] = merged.get((noise, rate), 0) + steps
        return _epsilon(self, tuple((n, q, k) for (n, q), k in sorted(merged.items()))) if merged else 0.0

    def for_member(self, rows: int, batch_size: int, epochs: int) -> DPTraining:
        """What a member with `rows` training rows runs each round, its noise solved if the spec gives none."""
        if rows < 1:
            raise NodeError("differential privacy needs at least one training row")
        if self.delta >= 1 / rows:
            raise NodeError(
                f"spec [privacy] delta = {self.delta:g} is not below 1 / rows ({rows} rows): it would allow "
                "leaking a row outright"
            )
        q = min(1.0, batch_size / rows)
        steps = epochs * max(1, round(rows / batch_size))
        return DPTraining(self, q, steps)


@dataclass(frozen=True)
class DPTraining:
    """One member's DP-SGD: its sampling rate and steps a round, the noise, and the epsilon it has spent."""

    config: DPConfig
    sample_rate: float
    steps: int  # per round

    @cached_property
    def noise(self) -> float:
        """The noise multiplier: the spec's, or solved so that `rounds` rounds spend the budget."""
        if self.config.noise is not None:
            return self.config.noise
        from opacus.accountants.utils import get_noise_multiplier

        try:
            with warnings.catch_warnings():  # "optimal order is the largest alpha": a bound less tight, not wrong
                warnings.simplefilter("ignore", UserWarning)
                return float(
                    get_noise_multiplier(
                        target_epsilon=self.config.epsilon,
                        target_delta=self.config.delta,
                        sample_rate=self.sample_rate,
                        steps=self.steps * self.config.rounds,
                        accountant=self.config.accountant,
                        epsilon_tolerance=0.01 * self.config.epsilon,
                        **_orders(self.config),
                    )
                )
        except ValueError as exc:
            raise NodeError(f"cannot solve for the noise of [privacy] epsilon = {self.config.epsilon}: {exc}") from None

    @property
    def mechanism(self) -> Mechanism:
        """One round of this member's DP-SGD, as the accountant sees it."""
        return (self.noise, self.sample_rate, self.steps)

    def spent(self, rounds: int) -> float:
        """The epsilon spent (at the spec's delta) after `rounds` rounds of this member's mechanism."""
        return self.config.spent([self.mechanism] * rounds)

    def can_add(self, history: Sequence[Mechanism]) -> bool:
        """Whether one more round after `history` stays within the budget."""
        return self.config.spent([*history, self.mechanism]) <= self.config.epsilon


@functools.lru_cache(maxsize=1024)
def _epsilon(config: DPConfig, history: tuple[Mechanism, ...]) -> float:
    from opacus.accountants import PRVAccountant, RDPAccountant

    accountant = RDPAccountant() if config.accountant == "rdp" else PRVAccountant()
    accountant.history = list(history)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": a bound less tight, not wrong
        warnings.simplefilter("ignore", UserWarning)
        return float(accountant.get_epsilon(delta=config.delta, **_orders(config)))


def _orders(config: DPConfig) -> dict[str, Any]:
    return {"alphas": ALPHAS} if config.accountant == "rdp" else {}


class Keystream:
    """Uniform and Gaussian draws from ChaCha20 (`cryptography`) under a secret 256-bit key: what DP-SGD
    samples rows and draws noise from. Unpredictable without the key, unlike torch's and numpy's generators."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a keystream key is 32 bytes")
        self._stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()

    def uniform(self, n: int) -> npt.NDArray[np.float64]:
        """`n` draws, uniform on [0, 1) with 53 random bits each."""
        words = np.frombuffer(self._stream.update(bytes(8 * n)), dtype="<u8")
        return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def normal(self, n: int) -> npt.NDArray[np.float64]:
        """`n` standard normal draws (Box-Muller on uniforms in (0, 1])."""
        radius = np.sqrt(-2.0 * np.log(1.0 - self.uniform(n)))
        return np.asarray(radius * np.cos(2.0 * np.pi * self.uniform(n)), dtype=np.float64)


def onchain_epsilon(epsilon: float) -> int:
    """Epsilon as the contract keeps it: in thousandths, rounded up (0: no DP), at most 2^32 - 1."""
    return min(2**32 - 1, math.ceil(epsilon * MILLI - 1e-9)) if epsilon > 0 else 0


def train_private(
    spec: ModelSpec, params: Mapping[str, IntArray], data: Dataset, cfg: TrainConfig, dp: DPTraining, key: bytes
) -> dict[str, IntArray]:
    """DP-SGD from `params` on `data` for one round (`dp.steps` steps of Poisson-sampled, clipped, noised
    gradients); returns the new fixed-point parameters. The sampling and the noise come from a keystream
    under `key` (32 secret bytes: a fresh random one each round); the optimizer is the spec's."""
    import torch
    from torch.func import functional_call, grad, vmap

    draws = Keystream(key)
    model = load(spec, params)
    model.train()
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    named = dict(model.named_parameters())
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(named.values(), lr=cfg.lr)
        if cfg.optimizer == "adam"
        else torch.optim.SGD(named.values(), lr=cfg.lr)
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def row_loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = loss_fn(functional_call(model, p, (xi.unsqueeze(0),)).squeeze(1), yi.unsqueeze(0))
        return loss

    row_grads = vmap(grad(row_loss), in_dims=(None, 0, 0))
    clip, sigma, expected = dp.config.clip, dp.noise, dp.sample_rate * len(y)
    for _ in range(dp.steps):
        chosen = torch.from_numpy(np.flatnonzero(draws.uniform(len(y)) < dp.sample_rate))
        frozen = {k: v.detach() for k, v in named.items()}
        if len(chosen):
            grads = row_grads(frozen, x[chosen], y[chosen])
            norms = torch.sqrt(sum(g.reshape(len(chosen), -1).pow(2).sum(1) for g in grads.values()))
            factor = (clip / (norms + 1e-6)).clamp(max=1.0)
            summed = {k: torch.einsum("i,i...->...", factor, g) for k, g in grads.items()}
        else:
            summed = {k: torch.zeros_like(v) for k, v in frozen.items()}
        for k, p in named.items():
            noise = torch.from_numpy(draws.normal(p.numel()).reshape(p.shape) * (sigma * clip)).to(p.dtype)
            p.grad = (summed[k] + noise) / expected
        opt.step()
    return fixed_params(model)
