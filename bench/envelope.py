"""Envelope cost: what sealing an update to every member would add per round (issue 16; not in use yet).

`node/privacy/envelope.py` encrypts an update once (ChaCha20-Poly1305) and seals
its key to each member with HPKE (X25519). The peers do not seal their updates
yet; this measures what it will cost them, at 5, 10 and 20 members, for the
bank data's logreg and MLP updates (the demo's models):

- seal: one sender, its update for every member (one AEAD pass, one HPKE seal a member);
- open: one reader, one update (its wrap, then the AEAD pass);
- per round: every member seals its own and opens everyone else's (n seals, n x (n - 1) opens,
  spread over n machines: the figure is one member's share, n - 1 opens and one seal);
- bytes: the envelope over the plain update, and that overhead in the round's IPFS traffic.

Writes bench/results/envelope.md and envelope.json.

    .venv/bin/python -m bench.envelope
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account

from bench.results_file import stamp, table, write
from node.core.codec import encode
from node.learn.model import ModelSpec, initial_params
from node.privacy.envelope import Place, open_envelope, seal_envelope
from node.privacy.seal import SealKey
from node.sim.companies import DemoConfig, load_companies

MEMBERS = (5, 10, 20)
REPEATS = 20


def _median_ms(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    """The median of `repeats` timings, in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(content: bytes, n: int) -> dict[str, Any]:
    keys = [SealKey.generate() for _ in range(n)]
    members = [Account.create().address for _ in range(n)]
    recipients = {m: k.public for m, k in zip(members, keys, strict=True)}
    place = Place(31337, "0x" + "fe" * 20, members[0], 7)
    envelope, _inner, skipped = seal_envelope(content, recipients, place)
    assert not skipped
    opened = open_envelope(envelope, place, members[1], keys[1], required=members, max_size=len(content))
    assert opened.content == content
    seal_ms = _median_ms(lambda: seal_envelope(content, recipients, place))
    open_ms = _median_ms(lambda: open_envelope(envelope, place, members[1], keys[1], members, len(content)))
    return {
        "members": n,
        "update_bytes": len(content),
        "envelope_bytes": len(envelope),
        "overhead_bytes": len(envelope) - len(content),
        "seal_ms": round(seal_ms, 3),
        "open_ms": round(open_ms, 3),
        "member_round_ms": round(seal_ms + (n - 1) * open_ms, 3),
        "round_overhead_bytes": n * (len(envelope) - len(content)),
    }


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    schema, _ = load_companies(DemoConfig())
    results = {}
    for kind in ("logreg", "mlp"):
        content = encode(initial_params(ModelSpec(kind, schema.n_features)))
        results[kind] = [measure(content, n) for n in MEMBERS]
    meta = stamp("cryptography")
    rows = [
        [
            kind,
            str(r["members"]),
            f"{r['update_bytes']:,}",
            f"{r['envelope_bytes']:,}",
            f"{r['overhead_bytes']:,} ({r['overhead_bytes'] / r['update_bytes']:.1%})",
            f"{r['seal_ms']:.2f}",
            f"{r['open_ms']:.3f}",
            f"{r['member_round_ms']:.2f}",
        ]
        for kind, runs in results.items()
        for r in runs
    ]
    lines = [
        "# Envelope cost: sealing each update to every member (not in use yet)",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, cryptography "
        f"{meta['cryptography']}. Produced by `make bench` (`python -m bench.envelope`).",
        "",
        "`node/privacy/envelope.py`: one ChaCha20-Poly1305 pass over the update, its key sealed with HPKE "
        "(X25519, HKDF-SHA256, ChaCha20-Poly1305) to each member, the place and the recipient table bound. "
        "The peers do not seal their updates yet (README, docs/protocol.md); this is what it will add. Updates "
        f"are the demo's (bank data, {schema.n_features} features). Times are medians of {REPEATS}, one core.",
        "",
        *table(
            [
                "model",
                "members",
                "update bytes",
                "envelope bytes",
                "overhead",
                "seal (ms)",
                "open (ms)",
                "one member's round: 1 seal + n-1 opens (ms)",
            ],
            rows,
        ),
        "",
    ]
    write("envelope", lines, {"meta": meta, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
