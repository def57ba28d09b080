"""A company's own model: chosen on its training rows by cross-validation, local when the federation does not help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.errors import NodeError
from node.learn import personal
from node.learn.data import Dataset
from node.learn.model import ModelSpec, TrainConfig, auc, initial_params, predict, train_rounds
from node.learn.personal import FOLDS, PersonalModel, choose, gain_spreads, local_folds, weighted_aucs

SPEC = ModelSpec("logreg", 6)
CFG = TrainConfig(batch_size=32, lr=0.05)


def _company(n: int, seed: int, flip: bool = False) -> Dataset:
    """Rows whose label follows feature 0; with `flip`, this company's customers answer the other way."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    signal = x[:, 0] + 0.7 * x[:, 1] + rng.normal(scale=0.8, size=n)
    y = ((-signal if flip else signal) > 0.8).astype(np.float32)
    return Dataset(x, y, {}, {}, "toy")


def test_weighted_auc_equals_the_auc_of_the_resample_it_stands_for() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=80).astype(np.float32)
    s = rng.integers(0, 6, size=80).astype(np.float64)  # ties
    picks = [rng.integers(0, 80, size=80) for _ in range(5)]
    weights = np.stack([np.bincount(p, minlength=80) for p in picks]).astype(np.float64)
    expected = [auc(y[p], s[p]) for p in picks]
    assert np.allclose(weighted_aucs(y, s, weights), expected, atol=1e-12)


def test_a_company_the_global_model_serves_badly_keeps_exactly_its_local_model() -> None:
    mine = _company(600, 1, flip=True)
    # a global model trained on many customers who answer the other way
    glob = train_rounds(SPEC, CFG, _company(4000, 2), 3)
    folds = local_folds(SPEC, CFG, mine, 3)
    chosen = choose(SPEC, CFG, glob, folds)
    assert chosen.choice == "local" and chosen.weight == 0.0 and chosen.local is not None
    test = _company(400, 9, flip=True)
    alone = train_rounds(SPEC, CFG, mine, 3)
    assert np.array_equal(chosen.scores(SPEC, test.x), predict(SPEC, alone, test.x))
    by_name = {c.name: c for c in chosen.candidates}
    assert by_name["global"].gain < -0.2 and by_name["local"].bound == 0.0


def test_a_small_company_takes_the_federations_model_when_it_is_clearly_better() -> None:
    mine = _company(150, 4)  # a few dozen positives
    glob = train_rounds(SPEC, CFG, _company(6000, 5), 3)
    chosen = choose(SPEC, CFG, glob, local_folds(SPEC, CFG, mine, 3))
    assert chosen.choice != "local" and chosen.weight > 0
    best = next(c for c in chosen.candidates if c.name == chosen.choice)
    assert best.bound == max(c.bound for c in chosen.candidates) and best.bound > 0
    assert chosen.folds == FOLDS and chosen.rows == 150 and chosen.positives == int(mine.y.sum())


def test_with_too_few_positives_to_validate_the_company_uses_the_global_model() -> None:
    mine = _company(200, 6)
    mine = Dataset(mine.x, np.eye(1, 200, 7, dtype=np.float32)[0], {}, {}, "toy")  # one positive
    glob = initial_params(SPEC)
    chosen = choose(SPEC, CFG, glob, local_folds(SPEC, CFG, mine, 2))
    assert chosen.choice == "global" and chosen.folds == 0 and "too few" in chosen.note


def test_folds_shrink_to_the_positives_so_each_holds_both_classes() -> None:
    mine = _company(300, 7)
    y = np.zeros(300, dtype=np.float32)
    y[np.flatnonzero(mine.y)[: FOLDS - 1]] = 1.0
    folds = local_folds(SPEC, CFG, Dataset(mine.x, y, {}, {}, "toy"), 1)
    assert folds.folds == FOLDS - 1
    assert all(y[folds.fold == f].sum() == 1 for f in range(FOLDS - 1))


def test_no_candidate_is_scored_on_rows_it_was_trained_on(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = _company(300, 10)
    seen: list[set[bytes]] = []

    def spy(spec: ModelSpec, cfg: TrainConfig, data: Dataset, rounds: int, start: object = None) -> object:
        seen.append({row.tobytes() for row in data.x})
        return train_rounds(spec, cfg, data, rounds, start)  # type: ignore[arg-type]

    monkeypatch.setattr(personal, "train_rounds", spy)
    folds = local_folds(SPEC, CFG, mine, 2)
    chosen = choose(SPEC, CFG, train_rounds(SPEC, CFG, _company(2000, 2), 1), folds)
    held_out = [{row.tobytes() for row in mine.x[folds.fold == f]} for f in range(folds.folds)]
    # the local model on all rows, then per fold: local (k), fine-tuned (k); then the refit, if any
    per_fold = seen[1 : 1 + folds.folds] + seen[1 + folds.folds : 1 + 2 * folds.folds]
    assert len(per_fold) == 2 * folds.folds
    for i, trained in enumerate(per_fold):
        f = i % folds.folds
        assert not trained & held_out[f] and len(trained) == len(mine) - len(held_out[f])
    assert chosen.rows == len(mine)


def test_a_blend_scores_the_weighted_logits_and_a_fine_tuned_choice_is_refitted_on_every_row() -> None:
    mine, glob = _company(400, 11), train_rounds(SPEC, CFG, _company(3000, 2), 2)
    local = train_rounds(SPEC, CFG, mine, 2)
    x = _company(100, 12).x
    blend = PersonalModel("blend 0.25", 0.25, glob, local)
    expected = 0.25 * predict(SPEC, glob, x) + 0.75 * predict(SPEC, local, x)
    assert np.array_equal(blend.scores(SPEC, x), expected)
    assert np.array_equal(PersonalModel("global", 1.0, glob, None).scores(SPEC, x), predict(SPEC, glob, x))
    folds = local_folds(SPEC, CFG, mine, 2)
    for name, weight in (("fine-tuned", 1.0), ("blend 0.75", 0.75)):
        forced = [personal.Candidate(n, 0.7, 0.1 if n == name else -0.1, 0.0) for n in ("local", name)]
        picked = personal.refit(SPEC, CFG, glob, folds, max(forced, key=lambda c: c.bound), tuple(forced))
        assert picked.choice == name and picked.weight == weight
        if name == "fine-tuned":
            assert picked.local is None
            refit = train_rounds(SPEC, CFG, mine, 1, start=glob)
            assert all(np.array_equal(picked.federated[k], refit[k]) for k in refit)
        else:
            assert picked.local is not None and all(np.array_equal(picked.local[k], local[k]) for k in local)


def test_a_gains_spread_is_zero_against_itself_and_grows_with_fewer_rows() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(2000) < 0.2).astype(np.float32)
    good = y + rng.normal(scale=1.0, size=2000)
    other = y + rng.normal(scale=1.5, size=2000)
    spreads = gain_spreads(y, {"local": good, "same": good.copy(), "other": other}, 0)
    assert spreads["local"] == 0.0 and spreads["same"] == 0.0 and spreads["other"] > 0
    small = gain_spreads(y[:200], {"local": good[:200], "other": other[:200]}, 0)
    assert small["other"] > 2 * spreads["other"]
    one_class = gain_spreads(np.zeros(50, dtype=np.float32), {"local": good[:50], "other": other[:50]}, 0)
    assert all(np.isnan(v) for v in one_class.values())  # no AUC, no spread (not 0)


def test_the_choice_is_reproducible_and_survives_a_save_without_pickle(tmp_path: Path) -> None:
    mine, glob = _company(500, 8), train_rounds(SPEC, CFG, _company(3000, 2), 2)
    a = choose(SPEC, CFG, glob, local_folds(SPEC, CFG, mine, 2))
    b = choose(SPEC, CFG, glob, local_folds(SPEC, CFG, mine, 2))
    assert a.describe() == b.describe()
    a.save(tmp_path / "personal")
    back = PersonalModel.load(tmp_path / "personal")
    assert back.describe() == a.describe()
    assert np.array_equal(back.scores(SPEC, mine.x), a.scores(SPEC, mine.x))
    assert PersonalModel.load(tmp_path / "personal", {k: v.shape for k, v in glob.items()}).choice == a.choice
    with pytest.raises(NodeError, match="do not fit the federation's model"):
        PersonalModel.load(tmp_path / "personal", {"0.weight": (1, 7), "0.bias": (1,)})
    good = (tmp_path / "personal.json").read_text()
    for bad_json in ("[]", "{}", good.replace('"weight": ', '"weight": "x", "_": ')):
        (tmp_path / "personal.json").write_text(bad_json)
        with pytest.raises(NodeError, match="not a saved personal model"):
            PersonalModel.load(tmp_path / "personal")
    (tmp_path / "personal.json").write_text(good)
    for bad_npz in (b"not numpy", b"PK\x03\x04 broken zip"):
        (tmp_path / "personal.npz").write_bytes(bad_npz)
        with pytest.raises(NodeError, match="not a saved personal model"):
            PersonalModel.load(tmp_path / "personal")
