"""`fedchain demo --plot F`: each company's cumulative gains chart, local model against the one it uses.

matplotlib is imported here only, when a chart is asked for (so the demo itself
never loads it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from node.errors import NodeError

__all__ = ["gains_chart"]


def gains_chart(doc: dict[str, Any], path: Path) -> None:
    """A PNG of every company's gains curve (share of its test positives in the top x% of its list)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise NodeError(f"--plot needs matplotlib ({exc}): reinstall fedchain (`make setup`)") from None
    peers = [p for p in doc["peers"] if None not in p["gains"]["federated"]]
    if not peers:
        raise NodeError("--plot: no company has a positive among its test rows, so there is no gains curve")
    cols = min(4, len(peers))
    rows = math.ceil(len(peers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False, sharex=True, sharey=True)
    xs = [0.0] + [(i + 1) / len(peers[0]["gains"]["federated"]) for i in range(len(peers[0]["gains"]["federated"]))]
    for ax, p in zip(axes.flat, peers, strict=False):
        ax.plot(xs, [0.0, *p["gains"]["federated"]], marker="o", ms=3, label="the model it uses")
        if None not in p["gains"]["local"]:
            ax.plot(xs, [0.0, *p["gains"]["local"]], marker=".", ms=3, ls="--", label="local alone")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="random")
        lift = {k: "-" if v is None else f"{v:.1f}" for k, v in p["lift_at_10"].items()}
        ax.set_title(f"{p['name']} ({p['choice']}): lift@10 {lift['local']} -> {lift['federated']}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(peers) :]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.supxlabel("share of the list called (best score first)")
    fig.supylabel("share of the positives found")
    fig.suptitle("Cumulative gains on each company's test rows", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
