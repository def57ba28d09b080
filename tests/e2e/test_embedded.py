"""End to end on the embedded default: eth-tester + the embedded store, no daemons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from ledger.chain import embedded_chain
from ledger.client import FederationClient
from ledger.deploy import deploy
from ledger.types import Phase
from node.core.codec import IntArray
from node.horizontal.peer import Peer
from node.horizontal.spec import NodeSpec
from node.sim.companies import DemoConfig, load_companies
from node.sim.demo import demo_spec, play_round, run_demo
from node.store import EmbeddedStore
from tests.harness import cli_env, run_cli


@pytest.fixture
def small_csv(sample_csv: Path) -> Path:
    return sample_csv


def test_demo_rounds_finalize_and_every_peer_holds_the_same_model(small_csv: Path) -> None:
    cfg = DemoConfig(data=small_csv, split_by=None, peers=3, rounds=2, epochs=1, scoring="agreement")
    steps: list[str] = []
    doc = run_demo(cfg, progress=steps.append)
    assert [r["status"] for r in doc["rounds"]] == ["finalized", "finalized"]
    for r in (1, 2):  # progress names each company's step in each round
        said = [s for s in steps if s.startswith(f"round {r}/2: ")]
        assert {s.split(": ")[1] for s in said} == {p["name"] for p in doc["peers"]}
    assert {
        kind for kind in ("committed round 2", "revealed round 2", "voted round 2") if any(kind in s for s in steps)
    } == {
        "committed round 2",
        "revealed round 2",
        "voted round 2",
    }
    assert steps[0] == f"loading {small_csv.name}" and "centralized" in steps[-2]
    assert all(r["participants"] == 3 and r["votes"] == 3 for r in doc["rounds"])
    assert doc["rounds"][0]["model_hash"] != doc["rounds"][1]["model_hash"]
    assert len(doc["peers"]) == 3
    for p in doc["peers"]:
        assert p["role"] == "honest" and p["name"].startswith("peer-") and p["address"].startswith("0x")
        assert p["rows"] > 0 and 0.5 < p["local_auc"] <= 1.0 and 0.5 < p["federated_auc"] <= 1.0
        assert int(p["reward"]) > 0
        # what the company uses is its own choice, reported beside the plain global model
        assert p["choice"] == p["personal"]["choice"] and 0.5 < p["global_auc"] <= 1.0
        if p["choice"] == "global":
            assert p["federated_auc"] == p["global_auc"]
        if p["choice"] == "local":
            assert p["federated_auc"] == p["local_auc"]
            assert (
                p["lift_at_10"]["federated"] == p["lift_at_10"]["local"]
                and len(set(map(str, p["gains"].values()))) == 1
            )
        # marketing's yardsticks: a list better than random finds more buyers in its top decile than the base rate
        assert p["lift_at_10"]["federated"] > 1.0 and p["lift_at_10"]["local"] > 1.0
        curve = p["gains"]["federated"]
        assert len(curve) == 10 and curve == sorted(curve) and curve[-1] == 1.0 and curve[0] > 0.1
        best = max(p["personal"]["candidates"], key=lambda c: (c["bound"], c["name"] == "local"))
        assert best["name"] == p["choice"] and p["personal"]["validation_rows"] == p["train_rows"]
    assert sum(int(p["reward"]) for p in doc["peers"]) == int(doc["rewards_paid"])
    assert 0.6 < doc["federated_auc"] <= 1.0 and 0.6 < doc["centralized_auc"] <= 1.0
    again = run_demo(cfg)  # a rerun with the same seed gives the same models and choices, bit for bit
    assert [r["model_hash"] for r in again["rounds"]] == [r["model_hash"] for r in doc["rounds"]]
    assert [p["personal"] for p in again["peers"]] == [p["personal"] for p in doc["peers"]]


def small_federation(
    small_csv: Path, tmp_path: Path, n: int, scoring: str = "agreement"
) -> tuple[FederationClient, list[Peer], object]:
    cfg = DemoConfig(data=small_csv, split_by=None, peers=n, rounds=1, scoring=scoring)
    schema, companies = load_companies(cfg)
    chain = embedded_chain()
    deployer, *accounts = [Account.create() for _ in range(n + 1)]
    for a in (deployer, *accounts):
        chain.fund(a.address, 10**21)
    spec = demo_spec(cfg, schema, [a.address for a in accounts], n)
    deployment = deploy(chain, deployer, spec)
    fed = FederationClient(chain, deployment.federation)
    nspec = NodeSpec.from_federation(spec)
    store = EmbeddedStore(tmp_path / "store")
    peers = [
        Peer(c.name, a, fed, store, c.train, nspec, from_block=deployment.block)
        for c, a in zip(companies, accounts, strict=True)
    ]
    for p in peers:
        fed.join(p.account)
    return fed, peers, chain


def test_malformed_and_duplicated_updates_are_rejected_and_the_round_goes_on(small_csv: Path, tmp_path: Path) -> None:
    fed, peers, chain = small_federation(small_csv, tmp_path, 5)

    def wrong_shape(peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        return {**base, "extra": np.zeros(3, dtype=np.int64)}

    def zeros(peer: Peer, r: int, base: dict[str, IntArray]) -> dict[str, IntArray]:
        return {k: np.zeros_like(v) for k, v in base.items()}

    peers[0].make_update = wrong_shape
    peers[1].make_update = peers[2].make_update = zeros  # two identical updates: a copy
    play_round(fed, peers, 1, chain)  # type: ignore[arg-type]
    info = fed.round(1)
    assert info.phase == Phase.FINALIZED and info.reveals == 5
    credited = {p.name: fed.rewards(p.address)["credited"] for p in peers}
    assert credited[peers[0].name] == credited[peers[1].name] == credited[peers[2].name] == 0
    assert credited[peers[3].name] > 0 and credited[peers[4].name] > 0
    for p in peers:
        p.adopt_latest()
    assert len({tuple(np.concatenate([v.ravel() for v in p.params.values()])) for p in peers}) == 1


def test_cli_demo_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    for args, needle in (
        (["--data", str(bad), "--target", "y", "--positive", "yes", "--peers", "3"], "no target column 'y'"),
        (["--data", str(bad)], "--split-by"),
        (["--devnet", "--poisoners", "2"], "embedded default only"),
        (["--peers", "4", "--poisoners", "2", "--free-riders", "2"], "at least one company must be honest"),
        (["--peers", "5", "--rule", "multi-krum", "--poisoners", "2"], "among 5 companies: run at least 7 companies"),
        (["--dirichlet", "0.5"], "needs a number of peers (--peers N)"),
    ):
        out = run_cli("demo", *args, timeout=120)
        assert out.returncode == 1 and needle in out.stderr and "Traceback" not in out.stderr, out.stderr


def _on_a_terminal(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`fedchain ARGS` with stderr on a pseudo-terminal (as a person runs it), stdout piped; returns the
    run and what the terminal showed."""
    master, slave = os.openpty()
    shown: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal's last writer closed it
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "node.cli", *args],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=cli_env(),
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        os.close(slave)
        reader.join(30)
        os.close(master)
    return out, b"".join(shown).decode(errors="replace")


def test_cli_demo_shows_progress_on_a_terminal_and_nothing_when_quiet(small_csv: Path) -> None:
    data = ["--data", str(small_csv), "--target", "y", "--positive", "yes", "--peers", "3", "--rounds", "1"]
    out, terminal = _on_a_terminal("demo", *data)
    assert out.returncode == 0, terminal
    assert "\r\x1b[Kround 1/1: peer-1: " in terminal and terminal.endswith("\r\x1b[K")  # cleared at the end
    assert "federated AUC" in out.stdout and "\x1b" not in out.stdout  # the table, without the status line
    out, terminal = _on_a_terminal("demo", *data, "--quiet")
    assert out.returncode == 0 and out.stdout == "" and terminal == ""


def test_cli_demo_draws_the_gains_charts_and_reports_lift_per_company(small_csv: Path, tmp_path: Path) -> None:
    png = tmp_path / "gains.png"
    data = ["--data", str(small_csv), "--target", "y", "--positive", "yes", "--peers", "3", "--rounds", "1"]
    out = run_cli("demo", *data, "--plot", str(png), "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # --json: the chart's line stays off stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert all(set(p["lift_at_10"]) == {"local", "federated"} for p in doc["peers"])
    bad = run_cli("demo", "--vertical", "--plot", str(png), timeout=120)
    assert bad.returncode == 1 and "not with --vertical" in bad.stderr
