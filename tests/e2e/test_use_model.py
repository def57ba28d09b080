"""A finalized model read for use (`fedchain predict`, `fedchain model export`): the one the chain agreed on,
for a member or an auditor of a sealed federation (who learns the model's key by re-running the round), and
one clear error for a round with no agreed model or a reader with no key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from node.core.codec import content_hash, encode
from node.errors import NodeError
from node.horizontal.finalized import CARD_FORMAT, Source, finalized_model, model_card
from node.privacy.sealing import Sealer, auditor_address
from tests.e2e.test_sealed import AUDITOR, member_reader, run_round, sealed_federation


def test_a_sealed_federations_model_is_read_by_a_member_or_an_auditor_and_nobody_else(
    sample_csv: Path, tmp_path: Path
) -> None:
    f = sealed_federation(sample_csv, tmp_path, 3)
    src = Source(f.fed, f.nspec, f.store, f.block)
    with pytest.raises(NodeError, match="no round has finalized yet"):
        finalized_model(src)
    run_round(f, 1)
    run_round(f, 2)
    with pytest.raises(NodeError, match="this federation is sealed: read its models as a member"):
        finalized_model(src)
    auditor = Sealer(f.fed, auditor_address(AUDITOR.public), AUDITOR, f.nspec.sealing)  # type: ignore[arg-type]
    for reader in (auditor, member_reader(f, 2)):  # neither holds a model key: each re-runs the round
        assert not reader.knows(2)
        fm = finalized_model(Source(f.fed, f.nspec, f.store, f.block, reader))
        assert fm.round == 2 and content_hash(encode(fm.params)) == f.fed.round(2).model_hash
        assert all(np.array_equal(fm.params[k], f.peers[0].params[k]) for k in fm.params)
        assert fm.participants == sorted(p.address for p in f.peers)
    older = finalized_model(Source(f.fed, f.nspec, f.store, f.block, member_reader(f, 0)), 1)
    assert older.round == 1 and content_hash(encode(older.params)) == f.fed.round(1).model_hash
    with pytest.raises(NodeError, match=r"round 3 is (commit|reveal|vote), not finalized"):
        finalized_model(Source(f.fed, f.nspec, f.store, f.block, auditor), 3)
    card = model_card(src, fm, None)
    assert card["format"] == CARD_FORMAT and card["model_hash"] == "0x" + f.fed.round(2).model_hash.hex()
    assert card["federation"]["sealed"] and len(card["features"]) == f.nspec.model.n_features
