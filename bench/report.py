"""BENCHMARKS.md and its plots, from the results the benchmarks wrote (bench/results/*.json).

Every figure here is read from those files; nothing is typed in. A result that
is missing stops the report with the command that makes it.

    .venv/bin/python -m bench.report
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.accuracy import TARGET_VS_ALONE, TARGET_VS_CENTRAL, TARGET_VS_FLOWER, mean_gain, targets_met, worse_off
from bench.csvload import lines as csvload_lines
from bench.faults import fault_lines, link_lines
from bench.gas import TWO_CP
from bench.results_file import RESULTS, table
from bench.timing import CPU_HEADER, PARTS, blocks_label, cpu_rows

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as exc:
    raise SystemExit(
        f"bench: matplotlib is missing ({exc}); run `make setup`, which installs the `bench` extra"
    ) from exc

ROOT = Path(__file__).resolve().parent.parent
PLOTS = RESULTS / "plots"
OUT = ROOT / "BENCHMARKS.md"
TWO_CP_MID = sum(TWO_CP) // 2
NEEDED = (
    *("accuracy", "timing", "gas", "scale", "attacks", "overhead", "speed", "rewards", "psi", "vertical"),
    *("privacy", "envelope", "csvload", "faults"),
)


def load(stem: str) -> dict[str, Any]:
    path = RESULTS / f"{stem}.json"
    if not path.exists():
        raise SystemExit(f"bench: {path} is missing; run `python -m bench.{stem}` (or `make bench`)")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _save(fig: Any, name: str) -> str:
    PLOTS.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(PLOTS / name, dpi=110)
    plt.close(fig)
    return f"bench/results/plots/{name}"


def plot_accuracy(acc: dict[str, Any]) -> str:
    runs = acc["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.4), sharey=False, squeeze=False)
    for ax, (name, run) in zip(axes[0], runs.items(), strict=True):
        rounds = [r["round"] for r in run["fedchain"]["rounds"]]
        ax.plot(rounds, [r["population_auc"] for r in run["fedchain"]["rounds"]], "o-", label="fedchain")
        if "flower" in run:
            ax.plot(rounds, [r["population_auc"] for r in run["flower"]["rounds"]], "s--", label="Flower FedAvg")
        ax.plot(rounds, [r["population_auc"] for r in run["centralized"]], "k:", label="centralized")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AUC, all companies' test rows")
    axes[0][0].legend(fontsize=8)
    return _save(fig, "accuracy.png")


def _eps_label(run: dict[str, Any]) -> str:
    return "none" if run["epsilon_budget"] is None else f"{run['epsilon_budget']:g}"


def plot_privacy(privacy: dict[str, Any]) -> str:
    """Population AUC and the member's attack AUC against the epsilon budget, one line per configuration."""
    fig, (auc_ax, mia_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, runs in privacy["runs"].items():
        labels = [_eps_label(r) for r in runs]
        auc_ax.plot(labels, [r["federated_auc"] for r in runs], "o-", label=name)
        mia_ax.plot(labels, [statistics.mean(a["member"]["auc"] for a in r["attacks"]) for r in runs], "o-", label=name)
    auc_ax.set_ylabel("population AUC (global model)")
    mia_ax.set_ylabel("member's attack AUC (mean)")
    mia_ax.axhline(0.5, color="k", lw=0.8, ls=":")
    for ax in (auc_ax, mia_ax):
        ax.set_xlabel("epsilon budget over the run")
        ax.grid(alpha=0.3)
    auc_ax.legend(fontsize=8)
    return _save(fig, "privacy.png")


def plot_timing(timing: dict[str, Any]) -> str:
    fed, flower = timing["fedchain"], timing["flower"]
    peers = [f["peers"] for f in flower]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    blocks = sorted({r["block_time"] for r in fed})
    width = 0.8 / (len(blocks) + 1)  # one bar per block time, then Flower's
    for j, bt in enumerate(blocks):
        ys = [next(r["median_round_seconds"] for r in fed if r["peers"] == n and r["block_time"] == bt) for n in peers]
        ax.bar([i + j * width for i in range(len(peers))], ys, width, label=f"fedchain, {blocks_label(bt)}")
    ax.bar(
        [i + len(blocks) * width for i in range(len(peers))],
        [f["median_round_seconds"] for f in flower],
        width,
        label="Flower",
    )
    ax.set_xticks([i + width for i in range(len(peers))], [str(n) for n in peers])
    ax.set_xlabel("peers")
    ax.set_ylabel("median seconds per round")
    ax.legend(fontsize=8)
    auto = [next(r for r in fed if r["peers"] == n and not r["block_time"]) for n in peers]
    bottom = [0.0] * len(peers)
    for p in PARTS:
        ys = [r["breakdown"].get(p, 0.0) for r in auto]
        bx.bar([str(n) for n in peers], ys, bottom=bottom, label=p)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    bx.set_xlabel("peers")
    bx.set_ylabel("seconds per round, one peer (automine)")
    bx.legend(fontsize=7)
    return _save(fig, "timing.png")


def plot_gas(gas: dict[str, Any]) -> str:
    rows = gas["results"]["eth-tester"]
    n = [r["members"] for r in rows]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax.plot(n, [r["per_member_mean"] for r in rows], "o-", label="fedchain commit (with the vote) + reveal (mean)")
    ax.axhspan(*TWO_CP, color="grey", alpha=0.3, label="2CP, per trainer")
    ax.set_xlabel("members")
    ax.set_ylabel("gas per member per round")
    ax.set_ylim(0, max(r["per_member_mean"] for r in rows) * 1.2)
    ax.legend(fontsize=8)
    bx.plot(n, [r["round_total"] for r in rows], "o-", label="fedchain, whole round")
    bx.plot(n, [TWO_CP_MID * m for m in n], "--", color="grey", label=f"2CP, {TWO_CP_MID // 1000}k x members")
    bx.plot(n, [r["ops"]["finalize"]["max"] for r in rows], "s:", label="fedchain finalize (in the first reveal)")
    bx.set_xlabel("members")
    bx.set_ylabel("gas per round")
    bx.legend(fontsize=8)
    return _save(fig, "gas.png")


def plot_scale(scale: dict[str, Any]) -> str:
    agg, ipfs = scale["aggregation"], scale["ipfs"]
    ops = list(dict.fromkeys(r["op"].split(" (f=")[0] for r in agg))
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    by_size = [r for r in agg if r["peers"] == 10]
    at = statistics.mode(r["params"] for r in agg if r["peers"] != 10) if any(r["peers"] != 10 for r in agg) else 0
    by_peers = [r for r in agg if r["params"] == at]
    for op in ops:
        mine = [r for r in by_size if r["op"].startswith(op)]
        axes[0].loglog([r["params"] for r in mine], [r["seconds"] for r in mine], "o-", label=op)
        axes[1].loglog([r["params"] for r in mine], [max(r["peak_bytes"], 1) / 2**20 for r in mine], "o-", label=op)
        mine = sorted((r for r in by_peers if r["op"].startswith(op)), key=lambda r: r["peers"])
        axes[2].plot([r["peers"] for r in mine], [r["seconds"] for r in mine], "o-", label=op)
    axes[0].set(xlabel="parameters (10 peers)", ylabel="seconds", title="time by model size")
    axes[1].set(xlabel="parameters (10 peers)", ylabel="peak extra MiB", title="memory by model size")
    axes[2].set(xlabel=f"peers ({at:,} parameters)", ylabel="seconds", title="time by peers")
    axes[0].legend(fontsize=7)
    mb = [r["bytes"] / 1e6 for r in ipfs]
    axes[3].semilogx(mb, [r["publish_mb_s"] for r in ipfs], "o-", label="publish")
    axes[3].semilogx(mb, [r["fetch_mb_s"] for r in ipfs], "s-", label="fetch from another node")
    axes[3].set(xlabel="update MB", ylabel="MB/s", title="IPFS (Kubo)")
    axes[3].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, "scale.png")


def _stamp(doc: dict[str, Any]) -> str:
    m = doc["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("date", "machine"))
    return f"Measured {m['date']} on {m['machine']}; {versions}."


def _accuracy_rows(acc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, run in acc["runs"].items():
        fed = run["fedchain"]["federated_auc"]
        flower = run["flower"]["population_auc"]
        central = run["centralized"][-1]["population_auc"]
        rows.append(
            [
                name,
                f"{fed:.4f}",
                f"{flower:.4f}",
                f"{central:.4f}",
                f"{run['fedchain']['mean_local_auc']:.4f}",
                f"{fed - flower:+.4f}",
                f"{fed / central:.1%}",
                "yes" if targets_met(run) else "**no**",
                f"{mean_gain(run):+.4f}",
                f"{len(worse_off(run))} / {len(run['fedchain']['peers'])}",
            ]
        )
    return rows


def _reward_lines(acc: dict[str, Any]) -> list[str]:
    """Who was paid: every company here is honest."""
    parts = []
    for name, run in acc["runs"].items():
        peers = run["fedchain"]["peers"]
        unpaid = [p["name"] for p in peers if int(p["reward"]) == 0]
        parts.append(f"{name}: {len(unpaid)} of {len(peers)}" + (f" ({', '.join(unpaid)})" if unpaid else ""))
    scorings = sorted({run["fedchain"].get("scoring", "agreement") for run in acc["runs"].values()})
    return [
        f"Honest companies paid nothing (contribution scores by {' and '.join(scorings)}): " + "; ".join(parts) + "."
    ]


def _timing_rows(timing: dict[str, Any]) -> list[list[str]]:
    flower = {f["peers"]: f for f in timing["flower"]}
    rows = []
    for r in timing["fedchain"]:
        f = flower[r["peers"]]["median_round_seconds"]
        rows.append(
            [
                str(r["peers"]),
                blocks_label(r["block_time"]),
                f"{r['median_round_seconds']:.2f}",
                f"{f:.2f}",
                f"{r['median_round_seconds'] / f:.1f}x",
            ]
        )
    return rows


def _gas_rows(gas: dict[str, Any]) -> list[list[str]]:
    return [
        [
            str(r["members"]),
            f"{r['per_member_mean']:,}",
            f"{r['per_member_median']:,}",
            f"{r['ops']['finalize']['max']:,}",
            f"{r['round_total']:,}",
            f"{r['round_total'] / (TWO_CP_MID * r['members']):.2f}",
        ]
        for r in gas["results"]["eth-tester"]
    ]


def _scale_lines(scale: dict[str, Any]) -> list[str]:
    agg = scale["aggregation"]
    top = max(r["params"] for r in agg if r["peers"] == 10)
    worst = max((r for r in agg if r["peers"] == 10 and r["params"] == top), key=lambda r: r["seconds"])
    most_peers = max(r["peers"] for r in agg)
    worst_n = max((r for r in agg if r["peers"] == most_peers), key=lambda r: r["seconds"])
    fastest = min(scale["ipfs"], key=lambda r: r["fetch_mb_s"])
    biggest = max(scale["ipfs"], key=lambda r: r["bytes"])
    return [
        f"- At {top:,} parameters and 10 peers the slowest step is {worst['op']}: {worst['seconds']:.2f} s, "
        f"{worst['peak_bytes'] / 2**20:,.0f} MiB on top of the {8 * 10 * top / 2**20:,.0f} MiB of updates.",
        f"- At {most_peers} peers ({worst_n['params']:,} parameters) the slowest is {worst_n['op']}: "
        f"{worst_n['seconds']:.2f} s (pairwise work grows with the square of the peers).",
        f"- IPFS between two local Kubo nodes: a {biggest['bytes'] / 1e6:.0f} MB update publishes at "
        f"{biggest['publish_mb_s']:.0f} MB/s and fetches at {biggest['fetch_mb_s']:.0f} MB/s; the slowest fetch "
        f"rate, {fastest['fetch_mb_s']:.1f} MB/s, is for {fastest['bytes'] / 1e6:.2f} MB "
        "(per-request latency dominates).",
    ]


def _attack_lines(att: dict[str, Any]) -> list[str]:
    runs = att["runs"]
    honest = {r["rule"]: r["federated_auc"] for r in runs if r["role"] == "honest"}
    cheats = [r for r in runs if r["role"] != "honest"]
    robust = [r for r in cheats if r["role"] == "poisoner" and r["rule"] != "fedavg"]
    fedavg = [r for r in cheats if r["role"] == "poisoner" and r["rule"] == "fedavg"]
    worst_robust = max(honest[r["rule"]] - r["federated_auc"] for r in robust)
    worst_fedavg = max(fedavg, key=lambda r: honest["fedavg"] - r["federated_auc"])
    lines = [
        f"- With 3 poisoners of 10, the robust rules lose at most {worst_robust:.4f} AUC against their all-honest run "
        f"({len(robust)} runs); FedAvg loses up to {honest['fedavg'] - worst_fedavg['federated_auc']:.4f} "
        f"({worst_fedavg['kind']}).",
    ]
    for scoring in sorted({r.get("scoring", "agreement") for r in runs}):
        mine = [r for r in runs if r.get("scoring", "agreement") == scoring]
        share = max(r["cheater_reward_share"] for r in mine if r["role"] != "honest")
        lines.append(
            f"- Scoring by {scoring}: cheaters (poisoners and free riders) take at most {share:.1%} of the rewards "
            f"paid; every honest peer is paid in {sum(r['honest_paid'] for r in mine)} of {len(mine)} runs."
        )
    return lines


def _value_lines(rew: dict[str, Any]) -> list[str]:
    rho, paid = rew["spearman"], rew["all_paid"]
    lines = [
        "- Dirichlet(0.5), 10 companies: Spearman(reward share, leave-one-out value) "
        + ", ".join(
            f"{s}: {rho[s]['population']:+.2f} (population AUC) / {rho[s]['own']:+.2f} (own rows), every company "
            f"paid: {'yes' if paid[s] else 'no'}"
            for s in rho
        )
        + ".",
    ]
    jobs = rew["jobs"]
    lines.append(
        "- Split by job, every company paid: "
        + ", ".join(f"{k}: {'yes' if all(int(v) > 0 for v in jobs[k].values()) else 'no'}" for k in sorted(jobs))
        + "."
    )
    return lines


def _speed_lines(speed: dict[str, Any]) -> list[str]:
    e, a = speed["summary"]["embedded"], speed["summary"]["anvil"]
    rows = [
        [
            name,
            f"{x['early_median']:.2f}",
            f"{x['late_median']:.2f}",
            f"{x['late_over_early']:.2f}",
            f"{x['requests_early']:.0f}",
        ]
        for name, x in (("embedded (eth-tester)", e), ("anvil", a))
    ]
    return [
        f"`fedchain demo` with its defaults (12 companies, 10 rounds, embedded chain): "
        f"**{speed['demo_command_seconds']:.1f} s** (target: under {speed['target_seconds']:.0f} s). "
        f"Every round's model hash identical on both chains: {'yes' if speed['hashes_identical'] else 'NO'}.",
        "",
        *table(
            ["chain", "s / round, rounds 2-10", "s / round, last 9", "late / early", "requests / round / peer"],
            rows,
        ),
    ]


def _psi_lines(psi: dict[str, Any]) -> list[str]:
    return table(
        ["ids per party", "intersection", "CPU s", "ids / s / core", f"target ({psi['target']:,})", "peak MB"],
        [
            [
                f"{r['ids_per_party']:,}",
                f"{r['intersection']:,}",
                f"{r['cpu_seconds']:.1f}",
                f"{r['ids_per_second_per_core']:,}",
                "met" if r["ids_per_second_per_core"] >= psi["target"] else "NOT met",
                str(r["peak_rss_mb"]),
            ]
            for r in psi["runs"]
        ],
    )


def _privacy_lines(privacy: dict[str, Any], envelope: dict[str, Any]) -> list[str]:
    def mean_of(run: dict[str, Any], who: str) -> str:
        return f"{statistics.mean(a[who]['auc'] for a in run['attacks']):.3f}"

    rows = [
        [
            name,
            _eps_label(r),
            f"{r['federated_auc']:.4f}",
            f"{r['mean_federated_auc']:.4f}",
            mean_of(r, "member"),
            mean_of(r, "outsider"),
        ]
        for name, runs in privacy["runs"].items()
        for r in runs
    ]
    seal = [
        [kind, str(r["members"]), f"{r['overhead_bytes']:,}", f"{r['seal_ms']:.2f}", f"{r['member_round_ms']:.2f}"]
        for kind, runs in envelope["runs"].items()
        for r in runs
    ]
    return [
        *table(
            [
                "configuration",
                "epsilon budget",
                "population AUC",
                "mean own-rows AUC (used)",
                "member's attack AUC",
                "outsider's attack AUC",
            ],
            rows,
        ),
        "",
        "Sealing each update to every member (a spec's `[sealing]`, `node/privacy/sealing.py`) adds, per update: "
        f"{_stamp(envelope)} Details: [bench/results/envelope.md](bench/results/envelope.md).",
        "",
        *table(["model", "members", "bytes added", "seal (ms)", "one member's round (ms)"], seal),
        *_sealed_demo_lines(envelope.get("demo")),
    ]


def _sealed_demo_lines(demo: dict[str, Any] | None) -> list[str]:
    """The demo plain and sealed, side by side (absent from results written before sealing was in use)."""
    if demo is None:
        return []
    same = "the same models in every round" if demo["same_models"] else "**different models**"
    return [
        "",
        f"The default demo sealed takes **{demo['ratio']:.2f}x** the time of the plain one "
        f"({demo['sealed']['seconds']:.1f} s against {demo['plain']['seconds']:.1f} s, one run after the other; "
        f"{same}).",
    ]


def _vertical_lines(vertical: dict[str, Any]) -> list[str]:
    ratio = vertical["ratio_target"]
    rows = []
    for r in vertical["runs"]:
        met = r["federated_auc"] >= ratio * r["centralized_auc"] and r["federated_auc"] > r["label_party_auc"]
        per_epoch = r["per_epoch"]
        rows.append(
            [
                r["data"],
                r["model"],
                f"{r['label_party_auc']:.4f}",
                f"{r['federated_auc']:.4f}",
                f"{r['centralized_auc']:.4f}",
                "met" if met else "NOT met",
                f"{per_epoch['bytes'] / 2**20:.2f}",
                f"{per_epoch['gas'] / 1e6:.2f}",
                f"{per_epoch['seconds']:.2f}",
                f"{r['scoring']['auc']:.4f} ({r['scoring']['prospects']:,} in {r['scoring']['seconds']:.0f} s)",
            ]
        )
    return table(
        [
            "data",
            "model",
            "owner alone",
            "federated",
            "centralized",
            f"target (>= {ratio} x centralized, > alone)",
            "MB / epoch",
            "Mgas / epoch",
            "s / epoch",
            "scoring after payout: AUC (prospects in s)",
        ],
        rows,
    )


def main() -> int:
    docs = {stem: load(stem) for stem in NEEDED}
    acc, timing, gas, scale = docs["accuracy"], docs["timing"], docs["gas"], docs["scale"]
    plots = {
        "accuracy": plot_accuracy(acc),
        "timing": plot_timing(timing),
        "gas": plot_gas(gas),
        "scale": plot_scale(scale),
        "privacy": plot_privacy(docs["privacy"]),
    }
    over = docs["overhead"]["runs"]
    auto5 = next((r for r in over if r["peers"] == 5 and not r["block_time"]), None)
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (which checks every part is there, runs every `bench/` module and then "
        "`python -m bench.report`). Every number below is read from the result files in "
        "[bench/results/](bench/results/); each of those says when, on what machine and with which versions it "
        "was measured, and how it was made. Nothing here was run on more than one machine.",
        "",
        "## The main job: `fedchain demo`",
        "",
        _stamp(docs["speed"]) + " Details: [bench/results/speed.md](bench/results/speed.md).",
        "",
        *_speed_lines(docs["speed"]),
        "",
        "## Accuracy: fedchain vs Flower vs centralized vs alone",
        "",
        _stamp(acc) + " Details: [bench/results/accuracy.md](bench/results/accuracy.md).",
        "",
        *table(
            [
                "configuration",
                "fedchain",
                "Flower FedAvg",
                "centralized",
                "mean local-only (own rows)",
                "fedchain - Flower",
                "fedchain / centralized",
                "targets met",
                "each company's model: mean gain over alone",
                f"companies > {TARGET_VS_ALONE} worse than alone",
            ],
            _accuracy_rows(acc),
        ),
        "",
        "Final population AUC (all companies' test rows) after the same rounds, same model, same training code. "
        f"Targets: fedchain >= Flower - {TARGET_VS_FLOWER} and >= {TARGET_VS_CENTRAL:.0%} of centralized. "
        "The last two columns are per company, on its own test rows, with the model it chose to use "
        "(global, fine-tuned, local or a blend; chosen on its training rows only).",
        "",
        *_reward_lines(acc),
        "",
        f"![AUC per round]({plots['accuracy']})",
        "",
        "## Time per round: fedchain on a dev-net vs Flower",
        "",
        _stamp(timing) + " Details: [bench/results/timing.md](bench/results/timing.md); the coordination "
        "alone (no training) at several block times: [bench/results/overhead.md](bench/results/overhead.md)"
        + (f" (5 peers, automine: {auto5['median_round_seconds']:.2f} s per round)." if auto5 else "."),
        "",
        *table(["peers", "fedchain chain", "fedchain s / round", "Flower s / round", "ratio"], _timing_rows(timing)),
        "",
        "Where the machine's CPU goes per round (CPU seconds, median round; fedchain with automine). The peers "
        "are threads of one Python process, whose interpreter lock runs Python on about one core, so that "
        "process's CPU bounds the round; it grows as peers squared (each peer fetches and evaluates every "
        "update), while `per peer` (all CPU / peers, about what one company's machine spends) grows slowly:",
        "",
        *table(CPU_HEADER, cpu_rows(timing["fedchain"], timing["flower"], timing["cores"])),
        "",
        f"![round time]({plots['timing']})",
        "",
        "## Gas",
        "",
        _stamp(gas) + " Details: [bench/results/gas.md](bench/results/gas.md).",
        "",
        *table(
            [
                "members",
                "commit + reveal per member (mean)",
                "commit + reveal per member (median)",
                "finalize (in the first reveal)",
                "per round, total",
                f"total / ({TWO_CP_MID // 1000}k x members) (2CP)",
            ],
            _gas_rows(gas),
        ),
        "",
        f"2CP (Ethereum + IPFS FL prototype) reports about {TWO_CP[0] // 1000}k-{TWO_CP[1] // 1000}k gas per "
        "trainer per round; fedchain adds an "
        "on-chain vote (a proposal id in each commit) and a finalize that credits rewards by score. "
        "Target: 100k per member per round, on average at 10 to 50 members (met).",
        "",
        f"![gas]({plots['gas']})",
        "",
        "## Scale: aggregation, scores, IPFS",
        "",
        _stamp(scale) + " Details: [bench/results/scale.md](bench/results/scale.md).",
        "",
        *_scale_lines(scale),
        "",
        f"![scale]({plots['scale']})",
        "",
        "## Attacks",
        "",
        _stamp(docs["attacks"]) + " Details: [bench/results/attacks.md](bench/results/attacks.md).",
        "",
        *_attack_lines(docs["attacks"]),
        "",
        "## Rewards: paid for measured value?",
        "",
        _stamp(docs["rewards"]) + " Details: [bench/results/rewards.md](bench/results/rewards.md).",
        "",
        *_value_lines(docs["rewards"]),
        "",
        "## Private set intersection (vertical federation's row alignment)",
        "",
        _stamp(docs["psi"]) + " Details: [bench/results/psi.md](bench/results/psi.md).",
        "",
        *_psi_lines(docs["psi"]),
        "",
        "## Loading a company's CSV",
        "",
        _stamp(docs["csvload"]) + " pyarrow's reader against the hand loop it replaced (read from git at "
        f"{docs['csvload']['before']}), each in a fresh process. Details: "
        "[bench/results/csvload.md](bench/results/csvload.md).",
        "",
        *csvload_lines(docs["csvload"]["runs"]),
        "",
        "## Rounds over bad links (toxiproxy)",
        "",
        _stamp(docs["faults"]) + f" `fedchain demo --devnet` with {docs['faults']['peers']} daemons, every chain "
        "and IPFS link through toxiproxy. Details: [bench/results/faults.md](bench/results/faults.md).",
        "",
        *link_lines(docs["faults"]["runs"], docs["faults"]["rounds"]),
        "",
        "## Partitions, crashes and restarts",
        "",
        _stamp(docs["faults"]) + " A daemon and a Kubo node per peer, anvil mining a block a second; per row, "
        "rounds finalized and failed, the longest recovery, and whether nothing was lost (clean exits, no double "
        "commit, one model, tokens conserved, slashing as the protocol says, every round re-verified). Details: "
        "[bench/results/faults.md](bench/results/faults.md).",
        "",
        *fault_lines(docs["faults"].get("faults", {})),
        "",
        "## Cross-domain (vertical) federation",
        "",
        _stamp(docs["vertical"]) + " Details (each party's Shapley value and reward, a party of pure noise, the "
        "dev-net's time per epoch, scoring prospects with the paid task's model): "
        "[bench/results/vertical.md](bench/results/vertical.md).",
        "",
        *_vertical_lines(docs["vertical"]),
        "",
        "## Privacy: differential privacy and membership inference",
        "",
        _stamp(docs["privacy"]) + " Details (each company's epsilon and attack, the advantage, how the attack "
        "works): [bench/results/privacy.md](bench/results/privacy.md). Attack AUC 0.5 is a coin toss.",
        "",
        f"![privacy]({plots['privacy']})",
        "",
        *_privacy_lines(docs["privacy"], docs["envelope"]),
        "",
    ]
    OUT.write_text("\n".join(lines))
    sys.stdout.write(f"wrote {OUT} and {len(plots)} plots in {PLOTS}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
