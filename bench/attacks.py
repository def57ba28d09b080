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

Every run is made once per scoring rule (agreement, evaluation).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.results_file import progress, stamp, table, write
from node.core.rules import RULES
from node.core.scoring import SCORINGS
from node.sim.attacks import FREE_RIDES, POISONS
from node.sim.companies import DemoConfig
from node.sim.demo import run_demo

PEERS, CHEATERS = 10, 3


def _one_thread() -> None:
    """Each worker trains on one thread: two workers on two cores, each with torch's default of two threads,
    spend most of their time contending (a run took 3-4 times as long)."""
    import torch

    torch.set_num_threads(1)


def _run(job: tuple[str, str, str, int, str, str]) -> dict[str, Any]:
    rule, role, kind, rounds, scoring, step = job
    progress("attacks", f"{rule} {role} {kind}, scoring by {scoring} ({step})")  # in the worker, as it starts
    cfg = DemoConfig(split_by=None, peers=PEERS, rounds=rounds, rule=rule, scoring=scoring)
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
        "scoring": scoring,
        "model_hash": doc["rounds"][-1]["model_hash"],
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
    plan = [(rule, "honest", "-") for rule in RULES]
    plan += [(rule, "poisoner", kind) for rule in RULES for kind in POISONS]
    plan += [(rule, "free-rider", kind) for rule in ("median",) for kind in FREE_RIDES]
    todo = [(*p, args.rounds, scoring) for p in plan for scoring in SCORINGS]
    jobs = [(*job, f"{i}/{len(todo)}") for i, job in enumerate(todo, 1)]
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_one_thread) as pool:
        runs = []
        for run in pool.map(_run, jobs):
            sys.stdout.write(
                f"{run['scoring']:10} {run['rule']:13} {run['role']:10} {run['kind']:12} "
                f"AUC {run['federated_auc']:.4f} "
                f"cheaters' share {run['cheater_reward_share']:.3f}\n"
            )
            sys.stdout.flush()
            runs.append(run)
    meta = stamp("torch", "numpy")
    write("attacks", render(runs, args.rounds, meta), {"meta": meta, "rounds": args.rounds, "runs": runs})
    return 0


def render(runs: list[dict[str, Any]], rounds: int, meta: dict[str, str]) -> list[str]:
    """attacks.md from the runs (every run once per scoring rule); refused if a scoring rule changed a model."""
    every = {(r["rule"], r["role"], r["kind"], r["scoring"]): r for r in runs}
    for rule, role, kind, _ in every:  # the scoring rule pays; it must not change the model
        if len({every[(rule, role, kind, s)]["model_hash"] for s in SCORINGS}) != 1:
            raise SystemExit(f"bench: {rule}/{role}/{kind} made different models under different scoring rules")
    by = {(r["rule"], r["role"], r["kind"]): r for r in runs if r["scoring"] == SCORINGS[0]}
    lines = [
        "# Attacks: poisoners, free riders, and what they earn",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, "
        f"numpy {meta['numpy']}. Produced by `make bench` (`python -m bench.attacks`).",
        "",
        f"UCI Bank Marketing without `duration`, split at random (stratified, seed 0) into {PEERS} companies, "
        f"{CHEATERS} of them cheating; logreg, Adam lr 0.01, one local epoch per round, {rounds} rounds. "
        "AUC on the population's test rows. Each robust rule's spec declares it must withstand 3 attackers "
        "(trimmed mean trims 30%, Multi-Krum f = 3); FedAvg declares none. Every run twice, once per scoring "
        "rule (peer agreement, peer evaluation: docs/protocol.md); the two make the same model (checked: same "
        "final model hash), so the AUC tables hold for both, and the reward cells say `agreement / evaluation`.",
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

    def shares(rule: str, role: str, kind: str) -> str:
        cells = [every[(rule, role, kind, s)] for s in SCORINGS]
        paid = " / ".join("yes" if c["honest_paid"] else "NO" for c in cells)
        return " / ".join(f"{c['cheater_reward_share']:.1%}" for c in cells) + f" ({paid})"

    share_rows = [[rule, *(shares(rule, "poisoner", k) for k in POISONS)] for rule in RULES]
    lines += table(["rule", *POISONS], share_rows)
    lines += ["", "## Free riders: final AUC and their share of the rewards paid", ""]
    ride_rows = [
        [
            rule,
            *(
                f"{by[(rule, 'free-rider', k)]['federated_auc']:.4f}, {shares(rule, 'free-rider', k)}"
                for k in FREE_RIDES
            ),
        ]
        for rule in ("median",)
    ]
    lines += table(["rule", *FREE_RIDES], ride_rows)
    robust = [r for r in by.values() if r["role"] == "poisoner" and r["rule"] != "fedavg"]
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
        *(
            f"- Scoring by {s}: cheaters' share of rewards at most 5% in "
            f"{sum(r['cheater_reward_share'] <= 0.05 for r in cheats if r['scoring'] == s)} of "
            f"{sum(r['scoring'] == s for r in cheats)} attack runs, largest "
            f"{max(r['cheater_reward_share'] for r in cheats if r['scoring'] == s):.1%}; every honest peer paid in "
            f"{sum(r['honest_paid'] for r in runs if r['scoring'] == s)} of "
            f"{sum(r['scoring'] == s for r in runs)} runs."
            for s in SCORINGS
        ),
        "",
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
