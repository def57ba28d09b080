"""Accuracy: fedchain against Flower FedAvg, a centralized model and training alone.

For each configuration (data split x model x fedchain's rule) it runs, on the
same companies (the bundled UCI Bank Marketing data, split by job or by a
Dirichlet label skew), with the same torch model, training code, local epochs
and rounds:

- fedchain: `fedchain demo` on the embedded default (chain, contracts, store);
- Flower: `flwr`'s stock FedAvg server and one client per company (`bench.flower`);
- centralized: one model trained on every company's training rows;
- local-only: each company alone on its own rows.

AUC is recorded after every round: on each company's own test rows (the mean
over companies) and on the whole population's test rows. Writes
bench/results/accuracy.md and accuracy.json.

    .venv/bin/python -m bench.accuracy [--rounds 10] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from bench.flower import companies_and_spec, run_flower
from bench.results_file import progress, stamp, table, write
from node.core.codec import IntArray
from node.horizontal.spec import NodeSpec
from node.learn.data import Dataset
from node.sim.companies import Company, DemoConfig
from node.sim.demo import run_demo
from node.sim.evaluate import auc_of, concat, round_aucs, train_alone

TARGET_VS_FLOWER = 0.005  # fedchain's final population AUC >= Flower's - this
TARGET_VS_CENTRAL = 0.99  # and >= 99% of the centralized model's
TARGET_VS_ALONE = 0.005  # every company's federated AUC (the model it uses) >= its alone AUC - this


def _evaluate(nspec: NodeSpec, companies: list[Company]) -> Any:
    test_all = concat([c.test for c in companies])
    return lambda _r, params: round_aucs(nspec, params, companies, test_all)


def targets_met(run: dict[str, Any]) -> bool:
    """Issue 5's targets: fedchain's final population AUC against Flower's and the centralized model's."""
    fed, flower = run["fedchain"]["federated_auc"], run.get("flower", {}).get("population_auc")
    central = run["centralized"][-1]["population_auc"]
    return flower is not None and fed >= flower - TARGET_VS_FLOWER and fed >= TARGET_VS_CENTRAL * central


def worse_off(run: dict[str, Any], key: str = "federated_auc") -> list[dict[str, Any]]:
    """Companies whose `key` AUC (the model they use; `global_auc`: the plain global model) is more than
    TARGET_VS_ALONE below training alone, on their own test rows (one-class test rows skipped)."""
    return [
        p
        for p in run["fedchain"]["peers"]
        if not np.isnan(p[key]) and not np.isnan(p["local_auc"]) and p[key] < p["local_auc"] - TARGET_VS_ALONE
    ]


def mean_gain(run: dict[str, Any], key: str = "federated_auc") -> float:
    return float(np.nanmean([p[key] - p["local_auc"] for p in run["fedchain"]["peers"]]))


def _curves(nspec: NodeSpec, companies: list[Company], rounds: int) -> dict[str, Any]:
    """Per-round AUC of the centralized model and of every company alone."""
    evaluate = _evaluate(nspec, companies)
    central: list[dict[str, float]] = []
    train_alone(nspec, concat([c.train for c in companies]), rounds, each=lambda r, p: central.append(evaluate(r, p)))
    local: list[list[float]] = [[] for _ in range(rounds)]
    for c in companies:

        def note(r: int, params: dict[str, IntArray], test: Dataset = c.test) -> None:
            local[r - 1].append(auc_of(nspec, params, test))

        train_alone(nspec, c.train, rounds, each=note)
    return {"centralized": central, "local_mean_auc": [round(float(np.nanmean(x)), 4) for x in local]}


def run_config(cfg: DemoConfig, flower_runs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One configuration: the fedchain demo, Flower on the same companies, centralized and local curves.

    Flower always runs FedAvg, so configurations that differ only in fedchain's rule share one Flower
    run through `flower_runs` (keyed by everything else that shapes it)."""
    doc = run_demo(cfg, out=print)
    companies, nspec = companies_and_spec(cfg)
    names = [p["name"] for p in doc["peers"]]
    if names != [c.name for c in companies]:
        raise RuntimeError(f"the demo's companies {names} differ from the benchmark's")
    cache = {} if flower_runs is None else flower_runs
    key = repr(replace(cfg, rule="fedavg"))
    if key not in cache:
        fl = run_flower(companies, nspec, cfg.rounds, _evaluate(nspec, companies))
        cache[key] = {
            "rounds": fl.rounds,
            "peers": {c.name: auc_of(nspec, fl.params, c.test) for c in companies},
            "population_auc": fl.rounds[-1]["population_auc"],
            "mean_auc": fl.rounds[-1]["mean_auc"],
        }
    sys.stdout.write(f"Flower FedAvg: population AUC {cache[key]['population_auc']:.4f}\n")
    return {"fedchain": doc, "flower": cache[key], **_curves(nspec, companies, cfg.rounds)}


def configs(rounds: int, quick: bool) -> dict[str, DemoConfig]:
    """Every split x model x rule: by job, at random (stratified), Dirichlet(0.5) label skew; logreg and
    MLP; FedAvg and the coordinate-wise median (a robust rule)."""
    splits = {
        "job": DemoConfig(split_by="job", rounds=rounds),
        "random": DemoConfig(split_by=None, peers=10, rounds=rounds),
        "Dirichlet 0.5": DemoConfig(split_by=None, peers=10, dirichlet=0.5, rounds=rounds),
    }
    runs = {}
    for split, base in splits.items():
        for model in ("logreg", "mlp"):
            for rule in ("fedavg", "median"):
                name = f"{split}, {'MLP' if model == 'mlp' else model}, {'FedAvg' if rule == 'fedavg' else rule}"
                runs[name] = replace(base, model=model, rule=rule)
    return {"job, logreg, FedAvg": runs["job, logreg, FedAvg"]} if quick else runs


def _summary_row(name: str, run: dict[str, Any]) -> list[str]:
    doc, fl = run["fedchain"], run.get("flower", {})
    peers = doc["peers"]
    used, plain = worse_off(run), worse_off(run, "global_auc")
    central = run["centralized"][-1]["population_auc"]
    fed = doc["federated_auc"]
    flower = fl.get("population_auc")
    least = min(int(p["reward"]) for p in peers) / max(1, int(doc["rewards_paid"]))
    return [
        name,
        f"{fed:.4f}",
        "-" if flower is None else f"{flower:.4f}",
        "-" if flower is None else f"{fed - flower:+.4f}",
        f"{central:.4f}",
        f"{fed / central:.3f}",
        f"{doc['mean_local_auc']:.4f}",
        f"{doc['mean_global_auc']:.4f}",
        f"{doc['mean_federated_auc']:.4f}",
        f"{mean_gain(run):+.4f}",
        f"{len(plain)} / {len(peers)}",
        f"{len(used)} / {len(peers)}" + (" (" + ", ".join(p["name"] for p in used) + ")" if used else ""),
        "-" if flower is None else f"{fl['mean_auc']:.4f}",
        f"{least:.1%}",
        "yes" if targets_met(run) else "**no**",
        "yes" if not used else "**no**",
    ]


def _totals(runs: dict[str, Any]) -> str:
    counted = [p for run in runs.values() for p in run["fedchain"]["peers"] if not np.isnan(p["federated_auc"])]
    used = sum(len(worse_off(run)) for run in runs.values())
    plain = sum(len(worse_off(run, "global_auc")) for run in runs.values())
    alone = [p for p in counted if not np.isnan(p["local_auc"])]
    gain = float(np.mean([p["federated_auc"] - p["local_auc"] for p in alone]))
    plain_gain = float(np.mean([p["global_auc"] - p["local_auc"] for p in alone]))
    beyond = sum(
        p["federated_auc"] < p["local_auc"] - TARGET_VS_ALONE - 2 * p["test_gain_spread"]
        for run in runs.values()
        for p in worse_off(run)
    )
    return (
        f"{used} of {len(counted)} company runs worse off with the model they use ({beyond} by more than twice "
        f"their test noise), {plain} with the plain global model; mean gain over alone {gain:+.4f} with the "
        f"model each uses, {plain_gain:+.4f} with the plain global model (the choice gives up some gain to "
        "leave fewer companies worse off)"
    )


def _peer_rows(run: dict[str, Any]) -> list[list[str]]:
    doc, fl = run["fedchain"], run.get("flower", {"peers": {}})
    paid = max(1, int(doc["rewards_paid"]))
    return [
        [
            p["name"],
            str(p["rows"]),
            f"{p['local_auc']:.4f}",
            f"{p['global_auc']:.4f}",
            p["choice"],
            f"{p['federated_auc']:.4f}",
            f"{p['federated_auc'] - p['local_auc']:+.4f} ± {p['test_gain_spread']:.4f}",
            f"{fl['peers'].get(p['name'], float('nan')):.4f}",
            f"{p['centralized_auc']:.4f}",
            f"{int(p['reward']) / paid:.1%}",
        ]
        for p in doc["peers"]
    ]


def _round_rows(run: dict[str, Any]) -> list[list[str]]:
    doc, fl = run["fedchain"], run.get("flower", {"rounds": []})
    rows = []
    for i, r in enumerate(doc["rounds"]):
        f = fl["rounds"][i] if i < len(fl["rounds"]) else {}
        c = run["centralized"][i]
        rows.append(
            [
                str(r["round"]),
                f"{r['population_auc']:.4f}",
                f"{f.get('population_auc', float('nan')):.4f}",
                f"{c['population_auc']:.4f}",
                f"{r['mean_auc']:.4f}",
                f"{f.get('mean_auc', float('nan')):.4f}",
                f"{c['mean_auc']:.4f}",
                f"{run['local_mean_auc'][i]:.4f}",
            ]
        )
    return rows


def report(runs: dict[str, Any], rounds: int, meta: dict[str, str]) -> list[str]:
    lines = [
        "# Accuracy: fedchain vs Flower FedAvg vs centralized vs alone",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, "
        f"numpy {meta['numpy']}, flwr {meta['flwr']}. Produced by `make bench` (`python -m bench.accuracy`).",
        "",
        "UCI Bank Marketing without `duration`. Three splits: by `job` (12 companies of 230 to 9,700 rows), "
        "10 companies at random (stratified: the same share of buyers each), and 10 companies with a "
        "Dirichlet(0.5) label skew (each class shared out by Dirichlet proportions: some companies see almost "
        "only buyers, others almost none); each with logreg and the MLP, FedAvg and the coordinate-wise median "
        "(a robust rule). Each company's rows split 80/20 (stratified, "
        f"seed 0). Same torch model and training code everywhere: Adam, lr 0.01, batch 64, one local epoch per "
        f"round, {rounds} rounds (centralized and local-only: the same number of epochs, same seeds). "
        "fedchain runs `fedchain demo` (embedded chain and store, integer aggregation, unweighted); Flower runs "
        "its stock FedAvg (weighted by rows, floating point) with one gRPC client per company.",
        "",
        "Population AUC is on all companies' test rows; per-company AUC on the company's own test rows "
        "(`nan` where those hold one class only, as for a company the Dirichlet split left with one or two "
        "buyers; means skip them).",
        "",
    ]
    lines += table(
        [
            "configuration",
            "fedchain",
            "Flower FedAvg",
            "fedchain - Flower",
            "centralized",
            "fedchain / centralized",
            "mean local-only",
            "mean global (own rows)",
            "mean used (own rows)",
            "mean gain of used over alone",
            f"global > {TARGET_VS_ALONE} worse than alone",
            f"used > {TARGET_VS_ALONE} worse than alone",
            "mean Flower (own rows)",
            "smallest reward share",
            "issue 5 targets",
            "no company worse off",
        ],
        [_summary_row(name, run) for name, run in runs.items()],
    )
    lines += [
        "",
        f"Targets (issue 5): fedchain's final population AUC >= Flower's - {TARGET_VS_FLOWER} and >= "
        f"{TARGET_VS_CENTRAL:.0%} of centralized. The first five columns are population AUC of the shared "
        "global model. Every company is honest here, so every one should earn a reward share.",
        "",
        f"No company worse off (issue 13): every company's AUC with the model it uses >= its AUC alone - "
        f"{TARGET_VS_ALONE}, on its own test rows. What a company uses is chosen on its own training rows "
        "only (cross-validated; `node.learn.personal`): the global model, the global model fine-tuned for one "
        'local epoch, its local model, or a blend of the global and local scores. "test noise" is the '
        "standard deviation of the gain over bootstrap resamples of the company's test rows: a company with "
        "a few dozen test positives cannot measure a gain of 0.005.",
        "",
        f"Totals over every configuration: {_totals(runs)}.",
        "",
    ]
    for name, run in runs.items():
        lines += [f"## {name}", "", "AUC after each round:", ""]
        lines += table(
            [
                "round",
                "fedchain (pop.)",
                "Flower (pop.)",
                "centralized (pop.)",
                "fedchain (own)",
                "Flower (own)",
                "centralized (own)",
                "local-only (own)",
            ],
            _round_rows(run),
        )
        lines += ["", "Final AUC per company (own test rows):", ""]
        lines += table(
            [
                "company",
                "rows",
                "local-only",
                "global",
                "uses",
                "used",
                "gain ± test noise (1 sd)",
                "Flower",
                "centralized",
                "reward share",
            ],
            _peer_rows(run),
        )
        lines.append("")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="split by job, logreg + FedAvg only")
    args = parser.parse_args()
    runs: dict[str, Any] = {}
    flower_runs: dict[str, dict[str, Any]] = {}
    todo = configs(args.rounds, args.quick)
    for i, (name, cfg) in enumerate(todo.items(), 1):
        progress("accuracy", f"{name}, {args.rounds} rounds ({i}/{len(todo)})")
        sys.stdout.write(f"== {name}\n")
        runs[name] = run_config(cfg, flower_runs)
    meta = stamp("torch", "numpy", "flwr")
    write("accuracy", report(runs, args.rounds, meta), {"meta": meta, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
