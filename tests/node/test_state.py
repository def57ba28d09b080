"""The peer's state file: bounded however long the peer runs, and one clear error when corrupt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.errors import NodeError
from node.horizontal.state import KEEP_ROUNDS, PeerState


def _play(state: PeerState, r: int) -> None:
    """What the peer does with its state in round r: note the round's block, commit, publish at reveal."""
    state.round_blocks[str(r)] = 100 * r
    state.keep_update(r, f"update {r}".encode())
    state.commits[str(r)] = {"hash": f"{r:064x}", "salt": f"{r + 1:064x}"}
    state.save()
    state.commits[str(r)]["cid"] = f"bafy{r}"
    state.save()
    state.model_round, state.model_cid = r, f"bafymodel{r}"
    state.save()


def test_the_state_file_stays_bounded_over_many_rounds(tmp_path: Path) -> None:
    path = tmp_path / "peer.json"
    state = PeerState(path)
    _play(state, 1)
    size_after_one = path.stat().st_size
    for r in range(2, 1001):
        _play(state, r)
    doc = json.loads(path.read_text())
    assert sorted(doc["commits"], key=int) == ["998", "999", "1000"] and len(doc["commits"]) == KEEP_ROUNDS
    assert sorted(doc["round_blocks"], key=int) == ["998", "999", "1000"]
    assert path.stat().st_size < 2 * size_after_one + 200  # the round numbers grew a few digits, nothing else
    assert [p.name for p in tmp_path.iterdir() if p.name != "peer.json"] == ["peer.update-1000"]

    again = PeerState.load(path)  # a restart still has what it needs to reveal the current round
    assert again.commits["1000"] == {"hash": f"{1000:064x}", "salt": f"{1001:064x}", "cid": "bafy1000"}
    assert again.update(1000) == b"update 1000"
    assert (again.model_round, again.model_cid) == (1000, "bafymodel1000")


def test_an_old_unbounded_state_file_is_trimmed_at_the_next_save(tmp_path: Path) -> None:
    path = tmp_path / "peer.json"
    commits = {str(r): {"hash": "aa", "salt": "bb"} for r in range(1, 51)}
    path.write_text(json.dumps({"model_round": 49, "model_cid": "bafy", "commits": commits, "round_blocks": {}}))
    state = PeerState.load(path)
    state.save()
    assert sorted(json.loads(path.read_text())["commits"], key=int) == ["48", "49", "50"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected a JSON object, found list"),
        ("{}", "missing 'commits'"),
        ('{"model_round": 1, "model_cid": "", "commits": []}', "commits: expected round"),
        ('{"model_round": 1, "model_cid": "", "commits": {"1": {"hash": "aa"}}}', "commits: expected round"),
        ('{"model_round": "x", "model_cid": "", "commits": {}}', "invalid literal"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_a_corrupt_state_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "peer.json"
    path.write_text(text)
    with pytest.raises(NodeError) as err:
        PeerState.load(path)
    assert f"peer state {path}" in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)
