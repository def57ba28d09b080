"""What a vertical task's scoring allows, where the command line can read it without loading torch."""

from __future__ import annotations

__all__ = ["FALLBACKS", "MAX_QUERY"]

MAX_QUERY = 200_000  # the most prospects a party scores in one request, unless it says otherwise
# scoring a prospect a party does not hold, or with the party offline: "mean" uses the party's mean training
# embedding (as training did for a silent party), "none" leaves the prospect unscored
FALLBACKS = ("mean", "none")
