"""The benchmarks' own machinery works (their figures are measured by `make bench`, never asserted here)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from bench import report as bench_report
from bench.accuracy import report as accuracy_report
from bench.accuracy import run_config
from bench.csvload import generate, loader_dir, schema
from bench.csvload import run as load_in_a_child
from bench.flower import companies_and_spec, run_flower
from bench.overhead import run
from bench.preflight import missing
from bench.results_file import REPO, RESULTS, portable, stamp
from bench.rewards import federation, spearman
from bench.scale import aggregation, ipfs_throughput
from bench.speed import one_run
from ledger.chain import connect, embedded_chain
from ledger.devnet import AnvilProcess
from node.datasets import DEFAULT_DATA
from node.horizontal.spec import NodeSpec, model_hash
from node.sim.companies import DemoConfig, load_companies
from node.sim.demo import demo_spec, run_demo
from node.sim.evaluate import train_alone


def test_the_overhead_bench_runs_peers_in_threads_on_a_devnet() -> None:
    result = run(n_peers=3, rounds=2, block_time=None, poll=0.05)
    assert result["statuses"] == ["FINALIZED", "FINALIZED"]
    assert result["agreed"]
    assert len(result["round_seconds"]) == 2
    steps = result["per_peer_round_seconds"]
    assert {"committed", "revealed", "voted", "ipfs_put", "ipfs_get"} <= set(steps)
    assert not result["trained_each_round"] and result["training_seconds_saved"] > 0  # trained once, beforehand


def test_the_speed_bench_runs_the_demo_on_both_chains_with_identical_models(anvil: AnvilProcess) -> None:
    """The same demo on eth-tester and on anvil: every round's model hash identical, requests counted."""
    embedded, rpc = one_run(embedded_chain(), 3), one_run(connect(anvil.url, anvil.chain_id), 3)
    assert embedded["model_hashes"] == rpc["model_hashes"] and None not in embedded["model_hashes"]
    for run_ in (embedded, rpc):
        assert len(run_["round_seconds"]) == 3 and all(r > 0 for r in run_["requests_per_round_per_peer"])


def test_the_timing_bench_trains_every_round_and_breaks_the_round_down() -> None:
    result = run(n_peers=3, rounds=2, block_time=None, poll=0.05, train=True)
    assert result["statuses"] == ["FINALIZED", "FINALIZED"] and result["agreed"]
    parts = result["breakdown"]
    assert {"train", "encode", "publish", "chain", "fetch", "aggregate", "adopt"} <= set(parts)
    assert all(v > 0 for v in parts.values())
    cpu = result["cpu_seconds_per_round"]  # read from /proc for anvil and the Kubo nodes, os.times for peers
    assert cpu["peers"] > 0 and cpu["kubo"] > 0 and cpu["anvil"] >= 0


def test_flower_with_one_client_computes_what_that_client_computes_alone(sample_csv: Path) -> None:
    """Flower is driven with fedchain's own training code: one client's FedAvg is its local model."""
    companies, nspec = companies_and_spec(DemoConfig(data=sample_csv, split_by=None, peers=2, rounds=2))
    flower = run_flower(companies[:1], nspec, 2)
    alone = train_alone(nspec, companies[0].train, 2)
    assert [r["round"] for r in flower.rounds] == [1, 2]
    assert all(r["cpu_seconds"] > 0 for r in flower.rounds)
    assert all(np.abs(flower.params[k] - alone[k]).max() <= 1 for k in alone)
    assert any(np.any(alone[k] != v) for k, v in nspec.initial_model().items())


def test_the_accuracy_bench_compares_fedchain_flower_centralized_and_alone(sample_csv: Path) -> None:
    run_ = run_config(DemoConfig(data=sample_csv, split_by=None, peers=3, dirichlet=1.0, rounds=2))
    assert [r["round"] for r in run_["flower"]["rounds"]] == [1, 2]
    assert len(run_["centralized"]) == 2 and len(run_["local_mean_auc"]) == 2
    assert set(run_["flower"]["peers"]) == {p["name"] for p in run_["fedchain"]["peers"]}
    lines = accuracy_report({"sample": run_}, 2, stamp("torch", "numpy", "flwr"))
    row = next(line for line in lines if line.startswith("| sample |"))
    assert f"{run_['fedchain']['federated_auc']:.4f}" in row and f"{run_['flower']['population_auc']:.4f}" in row


def test_the_scale_bench_measures_every_rule_and_moves_updates_between_two_kubo_nodes() -> None:
    rows = aggregation(5, 1000)
    assert [r["op"].split(" (")[0] for r in rows] == [
        "fedavg",
        "median",
        "trimmed-mean",
        "multi-krum",
        "scores",
        "decode+encode",
    ]
    assert all(r["seconds"] > 0 and r["peak_bytes"] > 0 for r in rows)
    ipfs = ipfs_throughput([1000, 20_000], repeats=1)  # checks the fetched bytes itself
    assert [r["params"] for r in ipfs] == [1000, 20_000] and ipfs[1]["bytes"] > ipfs[0]["bytes"]


def test_the_report_reads_every_result_and_draws_the_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results, ignore=shutil.ignore_patterns("plots"))
    monkeypatch.setattr(bench_report, "RESULTS", results)
    monkeypatch.setattr(bench_report, "PLOTS", results / "plots")
    monkeypatch.setattr(bench_report, "OUT", tmp_path / "BENCHMARKS.md")
    assert bench_report.main() == 0
    pngs = sorted((results / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["accuracy.png", "gas.png", "privacy.png", "scale.png", "timing.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    text = (tmp_path / "BENCHMARKS.md").read_text()
    first = next(iter(bench_report.load("accuracy")["runs"].values()))
    assert f"{first['fedchain']['federated_auc']:.4f}" in text
    (results / "timing.json").unlink()
    with pytest.raises(SystemExit, match=r"bench\.timing"):
        bench_report.main()


def test_the_benchmarks_refuse_to_start_with_a_part_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing() == []  # `make setup` installed every part
    monkeypatch.setenv("FEDCHAIN_ANVIL", "/nonexistent/anvil")
    assert [line.split(":")[0] for line in missing()] == ["anvil"]


def test_result_files_name_repository_files_relative_to_the_repository() -> None:
    data = {"data": str(DEFAULT_DATA), "runs": [{"csv": str(DEFAULT_DATA)}], "other": "/elsewhere/x.csv"}
    assert portable(data) == {
        "data": "node/datasets/bank-full.csv.gz",
        "runs": [{"csv": "node/datasets/bank-full.csv.gz"}],
        "other": "/elsewhere/x.csv",
    }
    absolute = re.compile(r'"/[^"]*/(node|bench|ledger)/')  # a repository file named by an absolute path
    committed = [p.name for p in RESULTS.glob("*.json") if str(REPO) in p.read_text() or absolute.search(p.read_text())]
    assert committed == []


def test_the_rewards_bench_replica_trains_the_model_the_chain_agreed_on(sample_csv: Path) -> None:
    cfg = DemoConfig(data=sample_csv, split_by=None, peers=3, rounds=2)
    doc = run_demo(cfg)
    schema, companies = load_companies(cfg)
    nspec = NodeSpec.from_federation(demo_spec(cfg, schema, [Account.create().address for _ in companies], 3))
    assert "0x" + model_hash(federation(nspec, companies, 2)).hex() == doc["rounds"][-1]["model_hash"]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert spearman([1, 1, 2], [5, 5, 6]) == 1.0  # ties share their mean rank


def test_the_privacy_bench_attacks_a_dp_run_and_the_attack_scores_what_it_should(sample_csv: Path) -> None:
    from bench.envelope import measure
    from bench.privacy import attack, run

    cfg = DemoConfig(data=sample_csv, split_by=None, peers=3, rounds=2, scoring="agreement", epsilon=2.0)
    result = run(cfg)
    assert result["finalized"] == 2 and len(result["attacks"]) == 3
    assert all(0 < p["epsilon"] <= 2.0 * 1.01 and p["dp_rounds"] == 2 for p in result["peers"])
    for a in result["attacks"]:
        for who in ("member", "outsider"):
            assert 0 <= a[who]["auc"] <= 1 and 0 <= a[who]["advantage"] <= 1
    # The attack itself: a model that fits the members' labels and gets the outsiders' wrong is caught.
    schema, companies = load_companies(DemoConfig(data=sample_csv, split_by=None, peers=2, rounds=1))
    nspec = NodeSpec.from_federation(demo_spec(cfg, schema, [Account.create().address for _ in range(3)], 3))
    members, outsiders = companies[0].train, companies[0].test
    fitted = train_alone(nspec, members, 30)
    flipped = type(outsiders)(outsiders.x, 1 - outsiders.y, {}, {}, "flipped")
    assert attack(nspec, fitted, members, flipped)["auc"] > 0.75
    same = attack(nspec, fitted, members, members)
    assert same["auc"] == 0.5 and same["advantage"] == 0.0
    cost = measure(b"\x01" * 1000, 3)
    assert cost["overhead_bytes"] == cost["envelope_bytes"] - 1000 > 0 and cost["seal_ms"] > 0


def test_the_csv_benchmark_finds_the_same_bits_before_and_after(tmp_path: Path) -> None:
    """bench.csvload's two loaders (the hand loop read from git, and this checkout's pyarrow reader)
    encode its generated file to the same bits, blank cells and unseen categories included."""
    data = tmp_path / "crm.csv"
    generate(data, 3000)
    assert b",," in data.read_bytes() and b"v7" in data.read_bytes()  # blank cells and unseen categories
    spec = schema().to_spec()
    before, after = (load_in_a_child(loader_dir(tmp_path, which), data, spec) for which in ("before", "after"))
    assert before["digest"] == after["digest"]
    assert after["seconds"] > 0 and after["peak_mb"] >= after["added_mb"] > 0
