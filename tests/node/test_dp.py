"""Differential privacy (node/privacy/dp.py): the spec's [privacy], DP-SGD's clipping and noise, and opacus's
accounting of what a member spends."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from node.core.codec import IntArray, from_fixed
from node.errors import NodeError
from node.learn.data import Dataset
from node.learn.model import ModelSpec, TrainConfig, initial_params, train
from node.privacy.dp import ALPHAS, DPConfig, Keystream, onchain_epsilon, train_private


def _data(rows: int, features: int = 6, scale: float = 1.0, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(rows, features)) * scale).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    return Dataset(x, y, {}, {}, "test")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"delta": 1e-5}, "epsilon (the budget) is required"),
        ({"epsilon": -1}, "epsilon must be a positive number"),
        ({"epsilon": float("inf")}, "epsilon must be a positive number"),
        ({"epsilon": 1, "delta": 1}, "delta must be between 0 and 1"),
        ({"epsilon": 1, "clip": 0}, "clip must be positive"),
        ({"epsilon": 1, "noise": 0}, "noise must be positive"),
        ({"epsilon": 1, "rounds": 0}, "rounds must be at least 1"),
        ({"epsilon": 1, "accountant": "gdp"}, "accountant 'gdp'"),
        ({"epsilon": 1, "epsilons": 2}, "unknown key 'epsilons'"),
        ({"epsilon": "lots"}, "could not convert"),
    ],
)
def test_a_bad_privacy_table_is_one_clear_error(table: dict[str, object], message: str) -> None:
    with pytest.raises(NodeError, match=r"^spec \[privacy\]") as err:
        DPConfig.from_spec({"privacy": table})
    assert message in str(err.value)


def test_no_privacy_table_means_no_dp() -> None:
    assert DPConfig.from_spec({}) is None


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_the_solved_noise_spends_the_budget_in_the_rounds_asked_and_opacus_agrees(accountant: str) -> None:
    cfg = DPConfig(epsilon=3.0, rounds=5, accountant=accountant)
    member = cfg.for_member(rows=4000, batch_size=64, epochs=1)
    assert member.sample_rate == 64 / 4000 and member.steps == 62
    spent = [member.spent(k) for k in range(7)]
    assert spent[0] == 0 and all(a < b for a, b in itertools.pairwise(spent))
    assert 2.9 <= spent[5] <= 3.0
    assert member.can_add([member.mechanism] * 4) and not member.can_add([member.mechanism] * 5)
    # The same figure from opacus's own accountant, stepped one DP-SGD step at a time.
    ref = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    for _ in range(3 * member.steps):
        ref.step(noise_multiplier=member.noise, sample_rate=member.sample_rate)
    orders = {"alphas": ALPHAS} if accountant == "rdp" else {}
    assert math.isclose(ref.get_epsilon(delta=cfg.delta, **orders), spent[3], rel_tol=1e-3)


def test_a_smaller_member_needs_more_noise_for_the_same_budget() -> None:
    cfg = DPConfig(epsilon=1.0, rounds=10)
    small, large = cfg.for_member(500, 64, 1), cfg.for_member(20000, 64, 1)
    assert small.noise > large.noise
    fixed = DPConfig(epsilon=1.0, noise=1.0, rounds=10)
    assert fixed.for_member(500, 64, 1).noise == 1.0  # given, not solved


def test_each_customers_gradient_is_clipped() -> None:
    """One plain SGD step over every row (q = 1) moves the model by at most lr x clip (plus the noise, here
    negligible), however large the rows' gradients; without DP the same step moves it by far more."""
    spec = ModelSpec("logreg", 6)
    data = _data(200, scale=1000.0)
    cfg = TrainConfig(epochs=1, batch_size=200, lr=1.0, optimizer="sgd")
    dp = DPConfig(epsilon=1e9, clip=0.5, noise=1e-9).for_member(200, 200, 1)
    assert dp.sample_rate == 1.0 and dp.steps == 1
    start = initial_params(spec)
    moved = train_private(spec, start, data, cfg, dp, bytes(32))
    plain = train(spec, start, data, cfg)

    def norm(params: dict[str, IntArray]) -> float:
        return float(np.sqrt(sum(float((from_fixed(params[k] - start[k]) ** 2).sum()) for k in start)))

    assert 0.05 < norm(moved) <= 0.5 * 1.001
    assert norm(plain) > 50


def test_the_noise_is_gaussian_at_the_scale_asked_and_comes_from_the_secret_seed() -> None:
    """One row, q = 1, one SGD step of lr 1: the update is its clipped gradient plus N(0, (noise x clip)^2)."""
    spec = ModelSpec("mlp", 6, hidden=64)
    data = _data(1)
    cfg = TrainConfig(epochs=1, batch_size=1, lr=1.0, optimizer="sgd")
    dp = DPConfig(epsilon=1.0, clip=0.1, noise=3.0).for_member(1, 1, 1)
    start = initial_params(spec)
    a, b = (train_private(spec, start, data, cfg, dp, bytes([i]) * 32) for i in (1, 2))
    again = train_private(spec, start, data, cfg, dp, bytes([1]) * 32)
    assert all(np.array_equal(a[k], again[k]) for k in a)  # reproducible by whoever holds the key, and only so
    diff = np.concatenate([from_fixed(a[k] - b[k]).ravel() for k in a])  # two noises: variance doubles
    assert diff.size > 500
    assert 0.9 * 0.3 * math.sqrt(2) < float(diff.std()) < 1.1 * 0.3 * math.sqrt(2)


def test_the_keystream_is_uniform_and_gaussian_and_depends_on_all_of_its_key() -> None:
    """Sampling and noise come from ChaCha20 under a 256-bit key: keys that differ anywhere (past the 32 or
    64 bits a Mersenne Twister seed keeps) give different draws; the draws have the right distribution."""
    keys = [bytes(32), bytes(31) + b"\x01", b"\x01" + bytes(31), bytes(8) + b"\x01" + bytes(23)]
    firsts = {Keystream(k).uniform(4).tobytes() for k in keys}
    assert len(firsts) == len(keys)
    stream = Keystream(bytes(range(32)))
    u, z = stream.uniform(200_000), stream.normal(200_000)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005 and abs(u.std() - 12**-0.5) < 0.005
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01 and abs(float(np.mean(z**4)) - 3) < 0.1  # sd 0.022
    with pytest.raises(ValueError):
        Keystream(bytes(16))


def test_one_row_changes_an_update_by_at_most_its_clipped_share() -> None:
    """Neighbouring datasets (one row replaced by an outlier), the same key, negligible noise: one plain SGD
    step over every row moves the model by the same amount but for one clipped gradient, at most 2 lr C / n."""
    spec = ModelSpec("logreg", 6)
    data = _data(100)
    x, y = data.x.copy(), data.y.copy()
    x[0], y[0] = 1e4, 1 - y[0]
    neighbour = Dataset(x, y, {}, {}, "test")
    cfg = TrainConfig(epochs=1, batch_size=100, lr=1.0, optimizer="sgd")
    dp = DPConfig(epsilon=1e9, clip=0.5, noise=1e-9, delta=1e-3).for_member(100, 100, 1)
    start = initial_params(spec)
    a, b = (train_private(spec, start, d, cfg, dp, bytes(32)) for d in (data, neighbour))
    moved = float(np.sqrt(sum(float((from_fixed(a[k] - b[k]) ** 2).sum()) for k in a)))
    assert 0.001 < moved <= 2 * 1.0 * 0.5 / 100 * 1.001


@pytest.mark.parametrize("rounds", [1, 10, 50, 100])
def test_a_member_never_trains_a_round_past_its_budget(rounds: int) -> None:
    cfg = DPConfig(epsilon=3.0, rounds=rounds)
    member = cfg.for_member(rows=2000, batch_size=64, epochs=1)
    history = []
    while member.can_add(history):
        history.append(member.mechanism)
        assert len(history) <= 2 * rounds
    # The budget lasts the rounds it was solved for (a round or two more when the solve landed below it),
    # and what was spent never passes it.
    assert rounds <= len(history) <= rounds * 1.05 + 1 and cfg.spent(history) <= 3.0


def test_history_is_accounted_round_by_round_when_a_members_data_changes() -> None:
    """A data file that grows between rounds: the past is accounted at the mechanism it ran, not today's."""
    cfg = DPConfig(epsilon=3.0, rounds=4)
    small, large = cfg.for_member(1000, 64, 1), cfg.for_member(8000, 64, 1)
    mixed = cfg.spent([small.mechanism, small.mechanism, large.mechanism])
    ref = RDPAccountant()
    ref.history = [(*small.mechanism[:2], 2 * small.steps), large.mechanism]
    assert math.isclose(mixed, ref.get_epsilon(delta=cfg.delta, alphas=ALPHAS), rel_tol=1e-9)
    assert mixed not in (cfg.spent([large.mechanism] * 3), cfg.spent([small.mechanism] * 3))
    assert mixed == cfg.spent([large.mechanism, small.mechanism, small.mechanism])  # order does not matter


def test_delta_must_be_below_one_over_the_rows() -> None:
    with pytest.raises(NodeError, match="not below 1 / rows"):
        DPConfig(epsilon=1.0, delta=1e-3).for_member(rows=2000, batch_size=64, epochs=1)


def test_epsilon_goes_on_chain_in_thousandths_rounded_up() -> None:
    assert [onchain_epsilon(e) for e in (0.0, 0.0004, 1.0, 2.9991, 1e12)] == [0, 1, 1000, 3000, 2**32 - 1]


def test_the_orders_tried_are_opacus_defaults_so_the_bound_is_never_tighter_than_opacus_own() -> None:
    """Fewer RDP orders than opacus's defaults: the epsilon reported is at or above what opacus would say."""
    assert set(ALPHAS) <= set(RDPAccountant.DEFAULT_ALPHAS)
    member = DPConfig(epsilon=3.0, rounds=5).for_member(rows=4000, batch_size=64, epochs=1)
    ref = RDPAccountant()
    ref.history = [(member.noise, member.sample_rate, member.steps * 5)]
    assert ref.get_epsilon(delta=1e-5) <= member.spent(5) <= 1.05 * ref.get_epsilon(delta=1e-5)  # 2.4% looser here
