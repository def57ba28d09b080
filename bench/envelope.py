"""Sealing cost: what sealing each update to every member adds per round, and to the demo.

With a spec's `[sealing]`, a peer encrypts its update once (ChaCha20-Poly1305)
and seals the key to each member with HPKE (X25519, each wrap's ephemeral key
derived from the key, so every reader checks every member's wrap),
`node/privacy/envelope.py` via `node/privacy/sealing.py`. This measures, at 5, 10 and 20 members, for the
bank data's logreg and MLP updates (the demo's models), with the sealed
payload's header (base round and model key) included:

- seal: one sender, its update for every member (one AEAD pass, one HPKE seal a member);
- open: one reader, one update (its wrap, every member's wrap made again and compared, then the AEAD pass);
- per round: every member seals its own and opens everyone else's (n seals, n x (n - 1) opens,
  spread over n machines: the figure is one member's share, n - 1 opens and one seal);
- bytes: the envelope over the plain update, and that overhead in the round's IPFS traffic;
- the demo (`fedchain demo`'s defaults: 12 companies, 10 rounds, embedded chain and store) run plain
  and sealed in turn: wall time, the ratio, and whether both agree on every round's model.

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

from bench.results_file import progress, stamp, table, write
from node.core.codec import encode
from node.learn.model import ModelSpec, initial_params
from node.privacy.envelope import Place, forget_wraps, open_envelope, seal_envelope
from node.privacy.seal import SealKey
from node.sim.companies import DemoConfig, load_companies
from node.sim.demo import run_demo

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


HEADER = 80  # the sealed payload's header: the base model's round (8 bytes) and key (32), and the one before's


def measure(update: bytes, n: int) -> dict[str, Any]:
    content = bytes(HEADER) + update
    keys = [SealKey.generate() for _ in range(n)]
    members = [Account.create().address for _ in range(n)]
    recipients = {m: k.public for m, k in zip(members, keys, strict=True)}
    place = Place(31337, "0x" + "fe" * 20, members[0], 7)
    envelope, _inner, skipped = seal_envelope(content, recipients, place)
    assert not skipped
    opened = open_envelope(envelope, place, members[1], keys[1], required=recipients, max_size=len(content))
    assert opened.content == content
    seal_ms = _median_ms(lambda: seal_envelope(content, recipients, place))

    def open_alone() -> None:  # as a peer's own process opens it: no wrap made before by another reader
        forget_wraps()
        open_envelope(envelope, place, members[1], keys[1], recipients, len(content))

    open_ms = _median_ms(open_alone)
    return {
        "members": n,
        "update_bytes": len(update),
        "envelope_bytes": len(envelope),
        "overhead_bytes": len(envelope) - len(update),
        "seal_ms": round(seal_ms, 3),
        "open_ms": round(open_ms, 3),
        "member_round_ms": round(seal_ms + (n - 1) * open_ms, 3),
        "round_overhead_bytes": n * (len(envelope) - len(update)),
    }


def demo_side_by_side() -> dict[str, Any]:
    """The default demo plain, then sealed (one after the other, the same machine): seconds and models."""
    runs: dict[str, Any] = {}
    for i, (name, sealed) in enumerate((("plain", False), ("sealed", True)), 1):
        progress("envelope", f"the default demo, {name} ({i}/2)")
        start = time.perf_counter()
        doc = run_demo(DemoConfig(sealed=sealed))
        runs[name] = {
            "seconds": round(time.perf_counter() - start, 2),
            "rounds": len(doc["rounds"]),
            "finalized": sum(r["status"] == "finalized" for r in doc["rounds"]),
            "model_hashes": [r["model_hash"] for r in doc["rounds"]],
            "mean_federated_auc": doc["mean_federated_auc"],
        }
    runs["ratio"] = round(runs["sealed"]["seconds"] / runs["plain"]["seconds"], 3)
    runs["same_models"] = runs["sealed"]["model_hashes"] == runs["plain"]["model_hashes"]
    return runs


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    schema, _ = load_companies(DemoConfig())
    results: dict[str, list[dict[str, Any]]] = {}
    for i, kind in enumerate(("logreg", "mlp"), 1):
        content = encode(initial_params(ModelSpec(kind, schema.n_features)))
        progress("envelope", f"seal and open a {kind} update for {', '.join(map(str, MEMBERS))} members ({i}/2)")
        results[kind] = [measure(content, n) for n in MEMBERS]
    demo = demo_side_by_side()
    meta = stamp("cryptography", "pyhpke")
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
        "# Sealing cost: each update sealed to every member",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, cryptography "
        f"{meta['cryptography']}, pyhpke {meta['pyhpke']}. Produced by `make bench` (`python -m bench.envelope`).",
        "",
        "`node/privacy/envelope.py`: one ChaCha20-Poly1305 pass over the update, its key sealed with HPKE "
        "(X25519, HKDF-SHA256, ChaCha20-Poly1305) to each member, the place and the recipient table bound; "
        "each wrap's ephemeral key is derived from the update's key, so a reader who opens an update makes "
        "every member's wrap again and compares it (the open column includes that: n wraps made); "
        f"the payload carries a {HEADER}-byte header (the rounds and keys of the base model and the one "
        "before it), counted in the overhead. "
        f"Updates are the demo's (bank data, {schema.n_features} features). Times are medians of {REPEATS}, "
        "one core.",
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
        "## The demo, plain and sealed",
        "",
        "`fedchain demo`'s defaults (12 companies, 10 rounds, embedded chain and store), run plain and then "
        "sealed in this one run. Sealed, each company also registers its key on chain once, reads the members' "
        "keys at its reveal and the round's committers when it fetches, and encrypts each model it publishes. "
        "The companies share one process, so each member's wrap of an update is made once there and then "
        "compared by every reader (apart, each peer makes every wrap of every update it opens: the table "
        "above).",
        "",
        *table(
            ["run", "seconds", "finalized", "mean federated AUC"],
            [
                [
                    k,
                    f"{demo[k]['seconds']:.1f}",
                    f"{demo[k]['finalized']}/{demo[k]['rounds']}",
                    str(demo[k]["mean_federated_auc"]),
                ]
                for k in ("plain", "sealed")
            ],
        ),
        "",
        f"Sealed / plain: **{demo['ratio']:.2f}x** the time. Every round's model hash is "
        + (
            "the same in both runs (sealing changes what is stored, not what is computed)."
            if demo["same_models"]
            else "**not** the same in both runs."
        ),
        "",
    ]
    write("envelope", lines, {"meta": meta, "runs": results, "demo": demo})
    return 0


if __name__ == "__main__":
    sys.exit(main())
