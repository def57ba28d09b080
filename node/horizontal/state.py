"""What a peer must remember across restarts, saved as JSON, atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ledger.files import write_atomic
from node.errors import NodeError

__all__ = ["PeerState"]


@dataclass
class PeerState:
    """A peer's memory: the model it adopted, its commitments' secrets, where its log scans start."""

    path: Path | None = None
    model_round: int = 0  # the finalized round whose model this peer last adopted (0: the initial model)
    model_cid: str = ""
    commits: dict[str, dict[str, str]] = field(default_factory=dict)  # round -> hash, salt (and cid once published)
    round_blocks: dict[str, int] = field(default_factory=dict)  # round -> a block at or before its opening
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
        if self.path is None:
            return
        doc = {
            "model_round": self.model_round,
            "model_cid": self.model_cid,
            "commits": self.commits,
            "round_blocks": self.round_blocks,
        }
        write_atomic(self.path, json.dumps(doc))

    @classmethod
    def load(cls, path: Path | None) -> PeerState:
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            blocks = {str(k): int(v) for k, v in data.get("round_blocks", {}).items()}
            return cls(path, int(data["model_round"]), str(data["model_cid"]), dict(data["commits"]), blocks)
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(f"peer state {path} is corrupt: {exc}") from exc
