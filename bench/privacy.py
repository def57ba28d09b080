"""Privacy: what differential privacy costs in AUC, and what it buys against membership inference.

Runs `fedchain demo` (embedded default, the whole protocol) on the bundled data
split by job (12 companies), logreg and the MLP, 10 rounds, and a run built to
overfit (20 companies at random, the MLP, 5 local epochs a round), at each epsilon
budget (every company spends at most that over the run, at delta 1e-5; its
noise is solved for its own row count by opacus's RDP accountant) and without
DP. For each run:

- AUC: the shared global model on the population's test rows, the mean of the
  companies' own test AUCs with the model each uses, and centralized beside it.
- A loss-threshold membership-inference attack (Yeom et al. 2018) on each
  company's training rows (members) against its held-out test rows
  (non-members): the attacker ranks rows by the model's loss on them, lower
  loss meaning "was trained on". Two attackers: a curious member, who sees the
  company's own last-round update (round 10's base model plus it: everything a
  member sees of one company), and an outsider, who sees only the finalized
  model. Attack AUC (0.5 is a coin) and advantage (the best TPR - FPR over
  thresholds), the mean and the largest over companies (small companies leak
  most and measure noisiest).

Flower's DP wrappers (`DifferentialPrivacyClientSide/ServerSide...`) are not run
beside it: they give client-level DP (one company's whole contribution), with
no accountant of their own, a different unit from fedchain's per-customer DP-SGD,
so there is no epsilon at which the two compare.

Writes bench/results/privacy.md and privacy.json.

    .venv/bin/python -m bench.privacy [--rounds 10] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.results_file import progress, stamp, table, write
from node.core.codec import MAX_ABS, IntArray, decode
from node.horizontal.peer import Peer
from node.horizontal.spec import NodeSpec
from node.learn.data import Dataset
from node.learn.model import auc, predict
from node.sim.companies import DemoConfig, load_companies
from node.sim.demo import run_demo

EPSILONS: list[float | None] = [1.0, 3.0, 8.0, None]
STRESS_PEERS = 20


def losses(nspec: NodeSpec, params: dict[str, IntArray], data: Dataset) -> npt.NDArray[np.float64]:
    """Each row's binary cross-entropy under `params`."""
    z = predict(nspec.model, params, data.x)
    return np.asarray(np.logaddexp(0.0, -z * (2 * data.y.astype(np.float64) - 1)), dtype=np.float64)


def attack(nspec: NodeSpec, params: dict[str, IntArray], members: Dataset, outsiders: Dataset) -> dict[str, float]:
    """The loss-threshold attack on `members` against `outsiders`: its AUC and its advantage (max TPR - FPR)."""
    score = -np.concatenate([losses(nspec, params, members), losses(nspec, params, outsiders)])
    truth = np.concatenate([np.ones(len(members)), np.zeros(len(outsiders))])
    order = np.argsort(-score, kind="mergesort")
    tpr = np.cumsum(truth[order]) / len(members)
    fpr = np.cumsum(1 - truth[order]) / len(outsiders)
    ranked = score[order]
    cut = np.append(ranked[1:] != ranked[:-1], True)  # thresholds between distinct scores only (ties together)
    return {"auc": auc(truth.astype(np.float32), score), "advantage": float(max(0.0, np.max((tpr - fpr)[cut])))}


def run(cfg: DemoConfig) -> dict[str, Any]:
    """One demo run, attacked: the AUCs, each company's epsilon, and both attackers' results per company."""
    _schema, companies = load_companies(cfg)
    seen: dict[str, Any] = {}

    def observe(r: int, peers: list[Peer]) -> None:
        if r == cfg.rounds - 1:
            seen["base"] = dict(peers[0].params)
        if r == cfg.rounds:  # nobody commits after the last round: each peer still holds its own update
            seen["nspec"], seen["final"] = peers[0].nspec, dict(peers[0].params)
            seen["updates"] = {}
            for p in peers:
                kept = p.state.update(r)
                assert kept is not None, f"{p.name} kept no round-{r} update"
                seen["updates"][p.name] = decode(kept, p.nspec.layout)

    started = time.monotonic()
    doc = run_demo(cfg, out=print, observe=observe)
    seconds = time.monotonic() - started
    nspec: NodeSpec = seen["nspec"]
    final: dict[str, IntArray] = seen["final"]
    attacks = []
    for c in companies:
        update = seen["updates"][c.name]
        own = {k: np.clip(seen["base"][k] + update[k], -MAX_ABS, MAX_ABS) for k in update}
        attacks.append(
            {
                "company": c.name,
                "train_rows": len(c.train),
                "member": attack(nspec, own, c.train, c.test),
                "outsider": attack(nspec, final, c.train, c.test),
            }
        )
    return {
        "epsilon_budget": cfg.epsilon,
        "model": cfg.model,
        "seconds": round(seconds, 1),
        "federated_auc": doc["federated_auc"],
        "centralized_auc": doc["centralized_auc"],
        "mean_federated_auc": doc["mean_federated_auc"],
        "mean_local_auc": doc["mean_local_auc"],
        "finalized": sum(r["status"] == "finalized" for r in doc["rounds"]),
        "peers": [
            {k: p.get(k) for k in ("name", "train_rows", "epsilon", "noise_multiplier", "dp_rounds")}
            for p in doc["peers"]
        ],
        "attacks": attacks,
    }


def _summary(name: str, runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in runs:
        eps = [p["epsilon"] for p in r["peers"] if p["epsilon"] is not None]
        member = [a["member"] for a in r["attacks"]]
        outsider = [a["outsider"] for a in r["attacks"]]

        def mean_max(xs: list[dict[str, float]], key: str) -> str:
            v = [x[key] for x in xs if not np.isnan(x[key])]
            return f"{np.mean(v):.3f} / {np.max(v):.3f}"

        rows.append(
            [
                name,
                "none" if r["epsilon_budget"] is None else f"{r['epsilon_budget']:g}",
                f"{max(eps):.3f}" if eps else "-",
                f"{r['federated_auc']:.4f}",
                f"{r['mean_federated_auc']:.4f}",
                f"{r['centralized_auc']:.4f}",
                f"{r['finalized']}",
                mean_max(member, "auc"),
                mean_max(member, "advantage"),
                mean_max(outsider, "auc"),
                mean_max(outsider, "advantage"),
                f"{r['seconds']:.0f}",
            ]
        )
    return rows


def report(results: dict[str, list[dict[str, Any]]], rounds: int, meta: dict[str, str]) -> list[str]:
    header = [
        "configuration",
        "epsilon budget",
        "largest epsilon spent",
        "population AUC",
        "mean own-rows AUC (used)",
        "centralized",
        "rounds finalized",
        "member attack AUC (mean / max)",
        "member advantage (mean / max)",
        "outsider attack AUC (mean / max)",
        "outsider advantage (mean / max)",
        "seconds",
    ]
    rows = [row for name, runs in results.items() for row in _summary(name, runs)]
    lines = [
        "# Privacy: differential privacy's cost in AUC, and membership inference with and without it",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, "
        f"opacus {meta['opacus']}. Produced by `make bench` (`python -m bench.privacy`).",
        "",
        f"UCI Bank Marketing without `duration`, split by `job` (12 companies) and, built to overfit, at random "
        f"into {STRESS_PEERS} companies with five local epochs a round; FedAvg, {rounds} rounds, otherwise one "
        "local epoch a round (Adam, lr 0.01, batch 64), through `fedchain demo` (embedded chain and store, the whole "
        "protocol). With a budget, every company trains by DP-SGD (per-row clipping to norm 1, Gaussian "
        "noise, Poisson sampling; `node/privacy/dp.py`) and spends at most that epsilon over the run at delta "
        "1e-5, its noise solved for its own row count by opacus's RDP accountant. Scoring by agreement (DP "
        "refuses scoring by evaluation). The model a company uses is still its own choice "
        "(`node.learn.personal`): a local model or a fine-tune it never publishes is outside the budget.",
        "",
        "Attack: loss threshold on each company's training rows (members) against its test rows (non-members). "
        "The member attacker holds one company's own round-"
        f"{rounds} update (with round {rounds - 1}'s model, which every member holds); the outsider only the "
        "finalized model. AUC 0.5 and advantage 0 mean the attacker learns nothing; mean and largest over the "
        "companies. The advantage is a maximum over thresholds, so on a small company's few test rows it is "
        "well above 0 by chance alone.",
        "",
        *table(header, rows),
        "",
        "Flower's DP wrappers are not beside it: they give client-level DP (a whole company's contribution) "
        "with no accountant of their own, a different unit from this per-customer DP-SGD, so there is no "
        "epsilon at which the two compare.",
        "",
    ]
    for name, runs in results.items():
        lines += [f"## {name}: each company", ""]
        head = ["company", "train rows", *(f"eps {r['epsilon_budget'] or 'none'}: spent / member AUC" for r in runs)]
        body = []
        for i, a in enumerate(runs[0]["attacks"]):
            cells = [a["company"], str(a["train_rows"])]
            for r in runs:
                eps = r["peers"][i]["epsilon"]
                cells.append(f"{'-' if eps is None else f'{eps:.3f}'} / {r['attacks'][i]['member']['auc']:.3f}")
            body.append(cells)
        lines += [*table(head, body), ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="logreg only, 3 rounds, epsilon 3 and none")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    base = DemoConfig(rounds=rounds, scoring="agreement")
    configs = {"job, logreg": base}
    if not args.quick:
        configs["job, MLP"] = replace(base, model="mlp")
        # Built to overfit, so that there is a leak to shrink: smaller companies, five local epochs a round.
        configs[f"random:{STRESS_PEERS}, MLP, 5 epochs"] = replace(
            base, model="mlp", epochs=5, split_by=None, peers=STRESS_PEERS
        )
    epsilons = [3.0, None] if args.quick else EPSILONS
    results: dict[str, list[dict[str, Any]]] = {}
    total, i = len(configs) * len(epsilons), 0
    for name, cfg in configs.items():
        results[name] = []
        for e in epsilons:
            i += 1
            progress("privacy", f"{name}, epsilon {'none' if e is None else f'{e:g}'} ({i}/{total})")
            results[name].append(run(replace(cfg, epsilon=e)))
    meta = stamp("torch", "numpy", "opacus")
    write("privacy", report(results, rounds, meta), {"meta": meta, "rounds": rounds, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
