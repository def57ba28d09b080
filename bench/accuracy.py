"""Accuracy of the federation against training alone and a centralized model.

Runs `fedchain demo` configurations on the bundled UCI Bank Marketing data split
by job (12 companies), side by side, and writes bench/results/accuracy.md and
accuracy.json: AUC per round, per company (own test rows), and on the whole
population's test rows, for federated, local-only, personalized (federated + one
local epoch) and centralized models of the same architecture.

    .venv/bin/python -m bench.accuracy [--rounds 10] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.results_file import stamp, write
from node.demo import DemoConfig, run_demo


def _peer_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| company | rows | local-only | federated | federated - local | personalized | centralized | reward share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    paid = max(1, int(doc["rewards_paid"]))
    for p in doc["peers"]:
        gain = p["federated_auc"] - p["local_auc"]
        lines.append(
            f"| {p['name']} | {p['rows']} | {p['local_auc']:.4f} | {p['federated_auc']:.4f} | {gain:+.4f} | "
            f"{p['personalized_auc']:.4f} | {p['centralized_auc']:.4f} | {int(p['reward']) / paid:.1%} |"
        )
    return lines


def _summary_row(name: str, doc: dict[str, Any]) -> str:
    peers = doc["peers"]
    worse = sum(p["federated_auc"] < p["local_auc"] - 0.01 for p in peers)
    worse_p = sum(p["personalized_auc"] < p["local_auc"] - 0.01 for p in peers)
    ratio = doc["federated_auc"] / doc["centralized_auc"]
    secs = sum(r["seconds"] for r in doc["rounds"]) / len(doc["rounds"])
    least = min(int(p["reward"]) for p in peers) / max(1, int(doc["rewards_paid"]))
    return (
        f"| {name} | {doc['federated_auc']:.4f} | {doc['centralized_auc']:.4f} | {ratio:.3f} | "
        f"{doc['mean_local_auc']:.4f} | {doc['mean_federated_auc']:.4f} | {doc['mean_personalized_auc']:.4f} | "
        f"{worse} / {len(peers)} | {worse_p} / {len(peers)} | {least:.1%} | {secs:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="logreg + FedAvg only")
    args = parser.parse_args()
    configs = {"logreg, FedAvg": DemoConfig(rounds=args.rounds)}
    if not args.quick:
        configs["logreg, median"] = DemoConfig(rounds=args.rounds, rule="median")
        configs["MLP, FedAvg"] = DemoConfig(rounds=args.rounds, model="mlp")
    docs = {}
    for name, cfg in configs.items():
        sys.stdout.write(f"== {name}\n")
        docs[name] = run_demo(cfg, out=lambda line: sys.stdout.write(line + "\n"))
    meta = stamp("torch", "numpy")
    first = next(iter(docs.values()))
    lines = [
        "# Accuracy: federated vs alone vs centralized",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, "
        f"numpy {meta['numpy']}. Produced by `make bench` (`python -m bench.accuracy`, which runs "
        "`fedchain demo` on the embedded default).",
        "",
        f"UCI Bank Marketing without `duration`, split by `job` into {len(first['peers'])} companies; each "
        "company's rows split 80/20 (stratified, seed 0). Adam, lr 0.01, batch 64, one local epoch per round, "
        f"{args.rounds} rounds; local-only and centralized models get the same number of epochs. "
        "Population AUC is on all companies' test rows; per-company AUC on the company's own.",
        "",
        "| configuration | federated (population) | centralized | ratio | mean local-only | mean federated | "
        "mean personalized | companies > 0.01 worse than alone | same, personalized | smallest reward share | "
        "s / round |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_summary_row(name, doc) for name, doc in docs.items()),
        "",
        "Targets (issue 3): federated within 1% of centralized; no company worse off than alone by more than 0.01 "
        "on its own test rows; companies gain on average. Every company is honest here, so every one should "
        "earn a reward share (contribution scores, issue 4; an even split would be 1/12 = 8.3%).",
        "",
    ]
    for name, doc in docs.items():
        lines += [f"## {name}", "", "AUC by round (mean over companies; population):", ""]
        lines += [", ".join(f"{r['round']}: {r['mean_auc']:.4f}; {r['population_auc']:.4f}" for r in doc["rounds"]), ""]
        lines += [*_peer_table(doc), ""]
    write("accuracy", lines, {"meta": meta, "runs": docs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
