"""What `Peer.step()` returns: one small typed event, the one shape logs, metrics and benchmarks read.

A step does at most one thing and says so with a `StepEvent`: its `kind`, the
round, the details that matter (hashes, CIDs, counts) and the seconds it spent
per kind of work. Things noticed on the way (an update rejected, a model
adopted) go to the peer's event sink as events of their own. The daemon prints
`event.text()`; benchmarks and tests read the fields, never the prose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["EventKind", "EventSink", "StepEvent", "Timings"]

EventKind = Literal[
    "idle",
    "advanced",
    "committed",
    "revealed",
    "voted",
    "finalized",
    "topped-up",
    "stake-short",
    "adopted",
    "rejected",
    "unrevealable",
    "model-unavailable",
    "budget-spent",
    "privacy-recovered",
    "key-registered",
]


class Timings(dict[str, float]):
    """Seconds spent per kind of work, added up: `with timings("train"): ...`; also added to `parent`."""

    def __init__(self, parent: Timings | None = None) -> None:
        super().__init__()
        self.parent = parent

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self[key] = self.get(key, 0.0) + spent
            if self.parent is not None:
                self.parent[key] = self.parent.get(key, 0.0) + spent


@dataclass(frozen=True)
class StepEvent:
    """One thing a peer did (or noticed) in one round; `kind == "idle"` means nothing was due."""

    kind: EventKind
    round: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.kind != "idle"

    def text(self) -> str:
        """The event as one readable log line."""
        r, d = self.round, self.details
        match self.kind:
            case "idle":
                return ""
            case "advanced":
                return f"advanced round {r} past its {d['window']} window"
            case "committed":
                spent = f", epsilon {d['epsilon']:.3f} spent" if "epsilon" in d else ""
                return f"committed round {r} update {d['hash'][:12]} ({d['bytes']} bytes, published at reveal{spent})"
            case "privacy-recovered":
                return (
                    f"counted rounds {', '.join(map(str, d['rounds']))} as privacy spent: the chain shows DP updates "
                    "from this peer that its state file does not hold"
                )
            case "budget-spent":
                return (
                    f"round {r}: privacy budget spent (epsilon {d['epsilon']:.3f} of {d['budget']:g}): "
                    "no more updates from this peer"
                )
            case "key-registered":
                return f"registered the encryption key {d['key'][:12]} for sealed updates (round {r} on)"
            case "revealed":
                return f"revealed round {r}" + (" (sealed)" if d.get("sealed") else "")
            case "voted":
                return f"voted round {r}: model {d['model_hash'][:12]} from {d['used']}/{d['fetched']} updates"
            case "finalized":
                return f"finalized round {r}"
            case "topped-up":
                return f"topped the stake up by {d['amount']}"
            case "stake-short":
                return f"round {r}: stake {d['stake']} is short of {d['needed']} and the balance cannot cover it"
            case "adopted":
                return f"adopted round {r}'s model {d['model_hash'][:12]}"
            case "unrevealable":
                return f"round {r}: cannot reveal: {d['reason']}"
            case "model-unavailable":
                return f"round {r}: sitting out, no copy of round {d['model_round']}'s model: {d['reason']}"
            case "rejected":
                return f"round {r}: rejected {d['member']}'s update: {d['reason']}"
        return f"{self.kind} round {r}"  # pragma: no cover - every kind is matched above


EventSink = Callable[[StepEvent], None]
