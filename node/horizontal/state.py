"""What a peer must remember across restarts, saved as JSON, atomically.

Only what a restart needs is kept, so the file stays a few hundred bytes however
long the peer runs: the commitments (hash, salt, CID) of the newest two rounds
(a restart reveals the current one; the chain's member status, not this file,
keeps a peer from committing twice) and the blocks the round's log scans start at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ledger.files import write_atomic
from node.errors import NodeError

__all__ = ["KEEP_ROUNDS", "PeerState"]

MODEL_KEYS = 4  # sealed models' keys kept: the model held, the one before it, and the rounds being decided
KEEP_ROUNDS = 3  # the open round, the one in its vote, and the one before (its log scans start there)
_V = TypeVar("_V")


def _newest(table: dict[str, _V]) -> dict[str, _V]:
    """The entries of the newest KEEP_ROUNDS rounds (keys are round numbers as text)."""
    keep = sorted(table, key=int)[-KEEP_ROUNDS:]
    return {k: table[k] for k in keep}


@dataclass
class PeerState:
    """A peer's memory: the model it adopted, its commitments' secrets, where its log scans start."""

    path: Path | None = None
    model_round: int = 0  # the finalized round whose model this peer last adopted (0: the initial model)
    model_cid: str = ""
    commits: dict[str, dict[str, str]] = field(default_factory=dict)  # round -> hash, salt (and cid once published)
    round_blocks: dict[str, int] = field(default_factory=dict)  # round -> a block at or before its opening
    # round -> (noise, sampling rate, steps) of each DP update this peer trained (kept for life: what its
    # privacy accountant counts)
    dp_rounds: dict[str, list[float]] = field(default_factory=dict)
    # round -> the key of its (sealed) model, for the newest models this peer held or learned
    model_keys: dict[str, str] = field(default_factory=dict)
    # Updates committed but not yet published, in memory; also on disk beside the state file.
    updates: dict[int, bytes] = field(default_factory=dict, repr=False)

    def keep_update(self, r: int, data: bytes) -> None:
        """Keep round `r`'s update until it is revealed (written before the commit, like the salt).

        An update is published only in the reveal phase, after every commitment is in: a
        member who fetched it earlier could otherwise commit a lightly edited copy.
        """
        self.updates = {r: data}
        if self.path is not None:
            for old in self.path.parent.glob(f"{self.path.stem}.update-*"):
                old.unlink(missing_ok=True)
            write_atomic(self._update_path(r), data)

    def update(self, r: int) -> bytes | None:
        """Round `r`'s kept update, from memory or from disk (after a restart); None if lost."""
        if r in self.updates:
            return self.updates[r]
        if self.path is not None and self._update_path(r).is_file():
            return self._update_path(r).read_bytes()
        return None

    def _update_path(self, r: int) -> Path:
        assert self.path is not None
        return self.path.parent / f"{self.path.stem}.update-{r}"

    def save(self) -> None:
        """Forget rounds a restart no longer needs, then write the rest atomically."""
        self.commits, self.round_blocks = _newest(self.commits), _newest(self.round_blocks)
        if self.path is None:
            return
        doc = {
            "model_round": self.model_round,
            "model_cid": self.model_cid,
            "commits": self.commits,
            "round_blocks": self.round_blocks,
            "dp_rounds": self.dp_rounds,
            "model_keys": dict(sorted(self.model_keys.items(), key=lambda kv: int(kv[0]))[-MODEL_KEYS:]),
        }
        write_atomic(self.path, json.dumps(doc))

    @classmethod
    def load(cls, path: Path | None) -> PeerState:
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise NodeError(f"peer state {path} is not valid JSON; move it aside to start afresh") from exc
        try:
            return cls(path, *_parse(data))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise NodeError(f"peer state {path} is corrupt ({what}); move it aside to start afresh") from exc


def _parse(
    data: Any,
) -> tuple[int, str, dict[str, dict[str, str]], dict[str, int], dict[str, list[float]], dict[str, str]]:
    """model_round, model_cid, commits, round_blocks, dp_rounds and model_keys from a state document, each
    checked."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, found {type(data).__name__}")
    commits = data["commits"]
    if not isinstance(commits, dict) or not all(
        isinstance(c, dict) and {"hash", "salt"} <= set(c) and all(isinstance(v, str) for v in c.values())
        for c in commits.values()
    ):
        raise TypeError("commits: expected round -> {hash, salt[, cid]} strings")
    for k in commits:
        int(k)
    blocks = {str(int(k)): int(v) for k, v in dict(data.get("round_blocks", {})).items()}
    dp_rounds = {str(int(r)): [float(m[0]), float(m[1]), int(m[2])] for r, m in dict(data.get("dp_rounds", {})).items()}
    keys = {str(int(r)): bytes.fromhex(str(k)).hex() for r, k in dict(data.get("model_keys", {})).items()}
    return int(data["model_round"]), str(data["model_cid"]), dict(commits), blocks, dp_rounds, keys
