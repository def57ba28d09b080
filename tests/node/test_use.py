"""Using a model: marketing's yardsticks (rank, decile, lift, gains), scoring a prospect file, and the export
(safetensors weights, an ONNX network whose scores onnxruntime computes as torch does)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file

from node.core.codec import to_fixed
from node.learn.data import DataError, Schema, load_csv
from node.learn.export import ONNX_INPUT, float_weights, onnx_bytes, write_safetensors
from node.learn.marketing import deciles, gains, lift_at, ranks
from node.learn.model import ModelSpec, initial_params, layout, load, predict
from node.learn.prospects import score_prospects, sigmoid, write_scores

SCHEMA = Schema(
    target="bought",
    positive="yes",
    numeric={"age": (40.0, 10.0), "spend": (100.0, 50.0)},
    categorical={"tier": ["gold", "silver"]},
)
SPEC = ModelSpec("logreg", SCHEMA.n_features)


def _params(weights: list[float], bias: float) -> dict[str, np.ndarray]:
    return {"0.weight": to_fixed(np.array([weights])), "0.bias": to_fixed(np.array([bias]))}


def test_ranks_deciles_lift_and_gains_by_hand() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6])
    assert ranks(scores).tolist() == [10, 1, 6, 2, 8, 4, 9, 3, 7, 5]  # the tie (0.9) in file order
    assert deciles(ranks(scores)).tolist() == [10, 1, 6, 2, 8, 4, 9, 3, 7, 5]
    assert deciles(np.arange(1, 21)).tolist() == [k for k in range(1, 11) for _ in range(2)]
    assert deciles(np.array([1, 2, 3])).tolist() == [1, 4, 7]
    y = np.array([0, 1, 0, 0, 0, 1, 0, 0, 0, 0], dtype=np.float32)
    assert lift_at(y, scores, 0.1) == pytest.approx(2.5)  # the top 1 of 2 rows tied at 0.9, one a buyer: 0.5 / 0.2
    assert lift_at(y, scores, 0.5) == pytest.approx(2.0)  # 2 of the top 5 against 2/10
    assert gains(y, scores, 5) == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])  # both buyers in the top 4
    assert np.isnan(lift_at(np.zeros(4), np.arange(4.0)))
    flat = np.zeros(10)  # every score tied: the list is no better than random, whatever the file's order
    assert lift_at(y, flat) == pytest.approx(1.0) and lift_at(y[::-1], flat) == pytest.approx(1.0)
    assert gains(y, flat, 5) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert ranks(flat).tolist() == list(range(1, 11))  # a call list still needs one order: the file's
    rng = np.random.default_rng(0)  # a random score finds buyers at the base rate: lift near 1, diagonal gains
    y_big, noise = (rng.random(200_000) < 0.1).astype(np.float32), rng.random(200_000)
    assert lift_at(y_big, noise) == pytest.approx(1.0, abs=0.05)
    assert gains(y_big, noise) == pytest.approx([k / 10 for k in range(1, 11)], abs=0.01)
    assert lift_at(y_big, y_big + noise * 0.1) == pytest.approx(1 / y_big.mean(), rel=0.01)  # a perfect list


def test_a_prospect_file_is_scored_as_training_encodes_it_and_its_other_columns_carried(tmp_path: Path) -> None:
    path = tmp_path / "prospects.csv"
    path.write_text(
        "customer_id;age;tier;spend;note\n"
        'C1;50;gold;150;"called, no answer"\n'
        "C2;;bronze;100;\n"  # a missing age, an unseen tier: as training does
        "C3;30;silver;;x\n"
        "C4;70;gold;300;y\n"
    )
    params = _params([1.0, 0.5, 0.2, -0.3, 0.0], -0.1)
    scored = score_prospects(path, SCHEMA, SPEC, params)
    labelled = tmp_path / "with-label.csv"
    labelled.write_text("age,spend,tier,bought\n50,150,gold,yes\n,100,bronze,no\n30,,silver,no\n70,300,gold,yes\n")
    x = load_csv(labelled, SCHEMA).x  # the same rows, through the training loader
    assert scored.score == pytest.approx(sigmoid(predict(SPEC, params, x)))
    assert scored.rank.tolist() == [2, 3, 4, 1] and scored.missing == {"age": 1, "spend": 1}
    assert scored.unknown_categories == {"tier": 1}
    out = io.StringIO()
    assert write_scores(scored, out) == 4
    lines = out.getvalue().splitlines()
    assert lines[0] == "customer_id,age,tier,spend,note,score,rank,decile"
    assert lines[1].startswith('C1,50,gold,150,"called, no answer",0.') and lines[1].endswith(",2,3")
    top = io.StringIO()
    assert write_scores(scored, top, top=2) == 2
    assert [line.split(",")[0] for line in top.getvalue().splitlines()[1:]] == ["C4", "C1"]  # best first


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("customer_id,age,spend\nC1,50,100\n", r"missing feature column\(s\) \['tier'\]"),
        ("age,spend,tier,score\n50,100,gold,1\n", "already has a column named 'score'"),
        ("age,spend,tier\n50,lots,gold\n", r"row 2, column 'spend': 'lots' is not a number"),
        ("age,spend,tier\n", "a header but no rows"),
    ],
)
def test_a_prospect_file_that_cannot_be_scored_is_one_clear_error(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=error):
        score_prospects(path, SCHEMA, SPEC, initial_params(SPEC))


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_the_exported_model_scores_as_torch_does_in_onnxruntime_and_its_weights_load(tmp_path: Path, kind: str) -> None:
    spec = ModelSpec(kind, SCHEMA.n_features, hidden=8, seed=3)
    rng = np.random.default_rng(1)
    params = {name: to_fixed(rng.normal(0, 0.5, size=shape)) for name, shape in layout(spec).items()}
    x = rng.normal(0, 1, size=(257, spec.n_features)).astype(np.float32)
    session = ort.InferenceSession(onnx_bytes(spec, params))
    (onnx_scores,) = session.run(None, {ONNX_INPUT: x})
    assert onnx_scores.shape == (257, 1)
    np.testing.assert_allclose(onnx_scores[:, 0], sigmoid(predict(spec, params, x)), rtol=1e-5, atol=1e-6)
    write_safetensors(tmp_path / "m.safetensors", spec, params, {"round": "3"})
    weights = load_file(str(tmp_path / "m.safetensors"))
    assert weights.keys() == float_weights(spec, params).keys()
    model = load(spec, params)
    for name, tensor in model.state_dict().items():
        assert torch.equal(torch.from_numpy(weights[name]), tensor)
