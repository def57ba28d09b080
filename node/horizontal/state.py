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
    commits: dict[str, dict[str, str]] = field(default_factory=dict)  # round -> hash, salt, cid
    round_blocks: dict[str, int] = field(default_factory=dict)  # round -> a block at or before its opening

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
