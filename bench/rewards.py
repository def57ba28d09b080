"""Rewards: do they pay measured value? Peer agreement and peer evaluation side by side.

Runs `fedchain demo` (embedded default, the whole protocol) under both scoring
rules and compares what each company was paid with what it is worth:

- Dirichlet(0.5) label skew over 10 companies, logreg, FedAvg: each company's
  reward share against its leave-one-out value, the final AUC of the federation
  minus that of the same federation without the company (trained off chain by
  the same code, seeds and rule; the full replica must reproduce the chain's
  final model hash), on the population's test rows and as the mean of the
  companies' own test AUCs. Spearman rank correlation of share and value.
- Split by job, logreg and MLP: is every honest company paid?
- 3 of 10 companies (random split, median) lying in their evaluations (friends
  rated +1 AUC, everyone else -1), with and without sign-flip poisoning: their
  share against their share in the same run with everyone honest, and whether
  every honest company is still paid.

Writes bench/results/rewards.md and rewards.json.

    .venv/bin/python -m bench.rewards [--rounds 10]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import numpy as np
from eth_account import Account

from bench.results_file import progress, stamp, table, write
from node.core.codec import MAX_ABS, IntArray
from node.core.scoring import SCORINGS
from node.horizontal.spec import NodeSpec, model_hash
from node.learn.model import train
from node.sim.companies import Company, DemoConfig, load_companies
from node.sim.demo import demo_spec, run_demo
from node.sim.evaluate import auc_of, concat

TARGET_SPEARMAN = 0.6
LIARS = 3


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank)."""

    def ranks(v: list[float]) -> np.ndarray:
        x = np.asarray(v, dtype=np.float64)
        r = np.empty(len(x))
        r[np.argsort(x, kind="mergesort")] = np.arange(len(x))
        for value in np.unique(x):
            r[x == value] = r[x == value].mean()
        return r

    return round(float(np.corrcoef(ranks(a), ranks(b))[0, 1]), 3)


def federation(nspec: NodeSpec, companies: list[Company], rounds: int) -> dict[str, IntArray]:
    """The model the protocol agrees on, trained off chain: every company's honest update, the spec's rule."""
    base = nspec.initial_model()
    for r in range(1, rounds + 1):
        updates = []
        for c in companies:
            trained = train(nspec.model, base, c.train, nspec.training.for_round(r))
            updates.append({k: np.clip(trained[k] - base[k], -MAX_ABS, MAX_ABS) for k in base})
        agg = nspec.aggregate(updates)
        base = {k: np.clip(base[k] + agg[k], -MAX_ABS, MAX_ABS) for k in base}
    return base


def leave_one_out(cfg: DemoConfig, final_hash: str) -> dict[str, dict[str, float]]:
    """Each company's value: AUC with everyone minus AUC without it (population, and mean of own test rows)."""
    schema, companies = load_companies(cfg)
    founders = [Account.create().address for _ in companies]
    nspec = NodeSpec.from_federation(demo_spec(cfg, schema, founders, len(companies)))
    test_all = concat([c.test for c in companies])

    def aucs(params: dict[str, IntArray]) -> tuple[float, float]:
        own = float(np.nanmean([auc_of(nspec, params, c.test) for c in companies]))
        return auc_of(nspec, params, test_all), own

    full = federation(nspec, companies, cfg.rounds)
    if "0x" + model_hash(full).hex() != final_hash:
        raise SystemExit("bench: the off-chain replica does not reproduce the chain's final model")
    with_all = aucs(full)
    out = {}
    for i, c in enumerate(companies, 1):
        progress("rewards", f"leave-one-out: the federation without {c.name} ({i}/{len(companies)})")
        without = aucs(federation(nspec, [o for o in companies if o is not c], cfg.rounds))
        out[c.name] = {"population": round(with_all[0] - without[0], 4), "own": round(with_all[1] - without[1], 4)}
    return out


def shares(doc: dict[str, Any]) -> dict[str, float]:
    paid = max(1, int(doc["rewards_paid"]))
    return {p["name"]: int(p["reward"]) / paid for p in doc["peers"]}


def honest_paid(doc: dict[str, Any]) -> bool:
    return all(int(p["reward"]) > 0 for p in doc["peers"] if p["role"] == "honest")


def run(cfg: DemoConfig) -> dict[str, Any]:
    doc = run_demo(cfg)
    sys.stdout.write(
        f"{cfg.scoring:10} {doc['split_by']:14} {cfg.model:6} {cfg.rule:7} liars {cfg.liars} poisoners "
        f"{cfg.poisoners}: AUC {doc['federated_auc']:.4f}, honest all paid {honest_paid(doc)}\n"
    )
    sys.stdout.flush()
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    skew = DemoConfig(split_by=None, peers=10, dirichlet=0.5, rounds=args.rounds)
    total, i = 3 * len(SCORINGS) + 4, 0  # demo runs, and the leave-one-out replicas as one step
    value: dict[str, Any] = {}
    for scoring in SCORINGS:
        i += 1
        progress("rewards", f"Dirichlet 0.5, logreg, FedAvg, scoring by {scoring} ({i}/{total})")
        doc = run(replace(skew, scoring=scoring))
        value[scoring] = {"doc": doc, "shares": shares(doc)}
    i += 1
    progress("rewards", f"leave-one-out values, trained off chain ({i}/{total})")
    loo = leave_one_out(skew, value["evaluation"]["doc"]["rounds"][-1]["model_hash"])
    names = sorted(loo, key=lambda n: -loo[n]["population"])
    correlation = {
        scoring: {
            kind: spearman([value[scoring]["shares"][n] for n in names], [loo[n][kind] for n in names])
            for kind in ("population", "own")
        }
        for scoring in SCORINGS
    }
    jobs = {}
    for model in ("logreg", "mlp"):
        for scoring in SCORINGS:
            i += 1
            progress("rewards", f"split by job, {model}, scoring by {scoring} ({i}/{total})")
            jobs[(scoring, model)] = run(DemoConfig(model=model, rounds=args.rounds, scoring=scoring))
    spread = DemoConfig(split_by=None, peers=10, rounds=args.rounds, rule="median", scoring="evaluation")
    i += 1
    progress("rewards", f"random split, median, every evaluator honest ({i}/{total})")
    honest_run = run(spread)
    lying = {}
    for poisoned in (False, True):
        i += 1
        progress("rewards", f"{LIARS} lying evaluators{', poisoning' if poisoned else ''} ({i}/{total})")
        lying[poisoned] = run(replace(spread, liars=LIARS, poisoners=LIARS if poisoned else 0))
    honest_share = shares(honest_run)

    meta = stamp("torch", "numpy")
    lines = [
        "# Rewards: paid for measured value?",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, torch {meta['torch']}, "
        f"numpy {meta['numpy']}. Produced by `python -m bench.rewards`; {args.rounds} rounds, the whole protocol on "
        "the embedded chain. Scoring rules: `agreement` (update geometry) and `evaluation` (peer evaluation on "
        "private rows, lower median; docs/protocol.md). Evaluation rewards lag a round, so its last round's work is "
        "paid only if another round runs.",
        "",
        "## Dirichlet(0.5) label skew, 10 companies, logreg, FedAvg: reward share against leave-one-out value",
        "",
        "Value: final AUC with every company minus final AUC without this one (same code, seeds and rule, trained "
        "off chain; the replica reproduces the chain's final model hash), on the population's test rows and as "
        "the mean of the companies' own test AUCs.",
        "",
    ]
    rows = []
    for n in names:
        doc_peer = next(p for p in value["evaluation"]["doc"]["peers"] if p["name"] == n)
        rows.append(
            [
                n,
                str(doc_peer["rows"]),
                f"{loo[n]['population']:+.4f}",
                f"{loo[n]['own']:+.4f}",
                *(f"{value[s]['shares'][n]:.1%}" for s in SCORINGS),
            ]
        )
    lines += table(
        ["company", "rows", "value (population)", "value (own rows)", *(f"share: {s}" for s in SCORINGS)], rows
    )
    lines += ["", "| Spearman(share, value) | population | own rows | every company paid |", "|---|---|---|---|"]
    for s in SCORINGS:
        c = correlation[s]
        lines.append(
            f"| {s} | {c['population']:+.3f} | {c['own']:+.3f} | {'yes' if honest_paid(value[s]['doc']) else 'NO'} |"
        )
    lines += ["", "## Split by job: is every company paid?", "", "| model | " + " | ".join(SCORINGS) + " |"]
    lines.append("|---|" + "---|" * len(SCORINGS))
    for model in ("logreg", "mlp"):
        cells = []
        for s in SCORINGS:
            doc = jobs[(s, model)]
            unpaid = [p["name"] for p in doc["peers"] if int(p["reward"]) == 0]
            cells.append("yes" if not unpaid else f"NO: {', '.join(unpaid)} unpaid")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## {LIARS} of 10 colluding evaluators (random split, median, scoring by evaluation)",
        "",
        "Their share of the rewards against the same companies' share with everyone honest.",
        "",
    ]
    liar_rows = []
    for poisoned, doc in lying.items():
        liars = [p["name"] for p in doc["peers"] if p["role"] != "honest"]
        now = sum(shares(doc)[n] for n in liars)
        before = sum(honest_share[n] for n in liars)
        liar_rows.append(
            [
                "lie and poison (sign-flip)" if poisoned else "lie, train honestly",
                f"{before:.1%}",
                f"{now:.1%}",
                f"{(now - before) * 100:+.1f} points",
                "yes" if honest_paid(doc) else "NO",
                f"{doc['federated_auc']:.4f} (honest {honest_run['federated_auc']:.4f})",
            ]
        )
    lines += table(["attack", "honest share", "share", "gain", "every honest company paid", "AUC"], liar_rows)
    lines += [
        "",
        "## Against the targets (issue 14)",
        "",
        f"- Spearman(share, value) >= {TARGET_SPEARMAN} under Dirichlet(0.5) with scoring by evaluation: "
        f"{correlation['evaluation']['population']:+.3f} on population AUC, {correlation['evaluation']['own']:+.3f} "
        "on the companies' own rows (agreement: "
        f"{correlation['agreement']['population']:+.3f} / {correlation['agreement']['own']:+.3f}).",
        "",
    ]
    data = {
        "meta": meta,
        "rounds": args.rounds,
        "leave_one_out": loo,
        "shares": {s: value[s]["shares"] for s in SCORINGS},
        "spearman": correlation,
        "all_paid": {s: honest_paid(value[s]["doc"]) for s in SCORINGS},
        "jobs": {f"{s}/{m}": {p["name"]: p["reward"] for p in d["peers"]} for (s, m), d in jobs.items()},
        "liars": {
            "honest_run": honest_share,
            **{("poisoned" if k else "honest_training"): shares(d) for k, d in lying.items()},
            "roles": {p["name"]: p["role"] for p in lying[True]["peers"]},
        },
    }
    write("rewards", lines, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
