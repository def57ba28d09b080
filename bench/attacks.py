"""Attacks: what poisoners do to the model under each rule, and what cheaters earn.

Runs `fedchain demo` (embedded default) on the bundled UCI Bank Marketing data
split at random (stratified) into 10 companies, side by side:

- every aggregation rule with all peers honest, then with 3 poisoners for every
  poison (sign-flip, scale, noise, label-flip, backdoor): population AUC, its
  change against the same rule's all-honest run, and the poisoners' reward share;
- 3 free riders of every kind (zero, noise, stale, copy-global) under the median
  (which keeps the model honest): AUC and the free riders' reward share.

Writes bench/results/attacks.md and attacks.json.

    .venv/bin/python -m bench.attacks [--rounds 8] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.results_file import stamp, table, write
from node.core.rules import RULES
from node.sim.attacks import FREE_RIDES, POISONS
from node.sim.companies import DemoConfig
from node.sim.demo import run_demo

PEERS, CHEATERS = 10, 3


def _run(job: tuple[str, str, str, int]) -> dict[str, Any]:
    rule, role, kind, rounds = job
    cfg = DemoConfig(split_by=None, peers=PEERS, rounds=rounds, rule=rule)
    if role == "poisoner":
        cfg.poisoners, cfg.poison = CHEATERS, kind
    elif role == "free-rider":
        cfg.free_riders, cfg.free_ride = CHEATERS, kind
    doc = run_demo(cfg)
    honest = [int(p["reward"]) for p in doc["peers"] if p["role"] == "honest"]
    return {
        "rule": rule,
        "role": role,
        "kind": kind,
        "federated_auc": doc["federated_auc"],
        "centralized_auc": doc["centralized_auc"],
        "cheater_reward_share": doc["cheater_reward_share"],
        "honest_paid": all(r > 0 for r in honest),
        "min_honest_share": min(honest) / max(1, int(doc["rewards_paid"])),
        "rewards_paid": doc["rewards_paid"],
        "rounds": [{k: r[k] for k in ("round", "status", "population_auc")} for r in doc["rounds"]],
        "peers": [{k: p[k] for k in ("name", "role", "reward", "federated_auc")} for p in doc["peers"]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2, help="demo runs in parallel")
    args = parser.parse_args()
    jobs = [(rule, "honest", "-", args.rounds) for rule in RULES]
    jobs += [(rule, "poisoner", kind, args.rounds) for rule in RULES for kind in POISONS]
    jobs += [(rule, "free-rider", kind, args.rounds) for rule in ("median",) for kind in FREE_RIDES]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = []
        for run in pool.map(_run, jobs):
            sys.stdout.write(
                f"{run['rule']:13} {run['role']:10} {run['kind']:12} AUC {run['federated_auc']:.4f} "
                f"cheaters' share {run['cheater_reward_share']:.3f}\n"
            )
            runs.append(run)
    by = {(r["rule"], r["role"], r["kind"]): r for r in runs}
    meta = stamp("torch", "numpy")
    lines = [
        "# Attacks: poisoners, free riders, and what they earn",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, "
        f"numpy {meta['numpy']}. Produced by `make bench` (`python -m bench.attacks`).",
        "",
        f"UCI Bank Marketing without `duration`, split at random (stratified, seed 0) into {PEERS} companies, "
        f"{CHEATERS} of them cheating; logreg, Adam lr 0.01, one local epoch per round, {args.rounds} rounds. "
        "AUC on the population's test rows. Each robust rule's spec declares it must withstand 3 attackers "
        "(trimmed mean trims 30%, Multi-Krum f = 3); FedAvg declares none. Contribution scores: peer agreement "
        "(docs/protocol.md).",
        "",
        "## Poisoners: final AUC (change against the same rule with every peer honest)",
        "",
    ]
    auc_rows = []
    for rule in RULES:
        base = by[(rule, "honest", "-")]["federated_auc"]
        aucs = [by[(rule, "poisoner", k)]["federated_auc"] for k in POISONS]
        auc_rows.append([rule, f"{base:.4f}", *(f"{a:.4f} ({a - base:+.4f})" for a in aucs)])
    lines += table(["rule", "all honest", *POISONS], auc_rows)
    lines += ["", "## Poisoners: their share of the rewards paid (every honest peer paid?)", ""]
    share_rows = []
    for rule in RULES:
        cells = [by[(rule, "poisoner", k)] for k in POISONS]
        share_rows.append(
            [rule, *(f"{c['cheater_reward_share']:.1%} ({'yes' if c['honest_paid'] else 'NO'})" for c in cells)]
        )
    lines += table(["rule", *POISONS], share_rows)
    lines += ["", "## Free riders: final AUC and their share of the rewards paid", ""]
    ride_rows = []
    for rule in ("median",):
        cells = [by[(rule, "free-rider", k)] for k in FREE_RIDES]
        ride_rows.append([rule, *(f"{c['federated_auc']:.4f}, {c['cheater_reward_share']:.1%}" for c in cells)])
    lines += table(["rule", *FREE_RIDES], ride_rows)
    robust = [r for r in runs if r["role"] == "poisoner" and r["rule"] != "fedavg"]
    held = [r for r in robust if by[(r["rule"], "honest", "-")]["federated_auc"] - r["federated_auc"] <= 0.01]
    cheats = [r for r in runs if r["role"] != "honest"]
    lines += [
        "",
        "## Against the targets (issue 4)",
        "",
        f"- Robust rules within 0.01 AUC of their all-honest run under 3 poisoners: {len(held)} of {len(robust)} "
        "runs"
        + (
            ""
            if len(held) == len(robust)
            else " (missed: " + ", ".join(f"{r['rule']}/{r['kind']}" for r in robust if r not in held) + ")"
        )
        + ".",
        f"- Cheaters' share of rewards at most 5%: {sum(r['cheater_reward_share'] <= 0.05 for r in cheats)} of "
        f"{len(cheats)} attack runs; largest {max(r['cheater_reward_share'] for r in cheats):.1%}.",
        f"- Every honest peer paid: {sum(r['honest_paid'] for r in runs)} of {len(runs)} runs.",
        "",
    ]
    write("attacks", lines, {"meta": meta, "rounds": args.rounds, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
