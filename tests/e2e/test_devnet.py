"""End to end on a real dev-net: anvil, three Kubo nodes in a private swarm, three peer daemons.

Each daemon is its own process (with its own thread count) and talks to its own
Kubo node, so every update crosses between IPFS nodes. Rounds finalize, every
daemon ends with the same model hash, and `fedchain audit verify` re-runs them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.devnet import AnvilProcess, GethProcess, free_port, start_anvil
from ledger.types import Phase
from node.learn.data import read_rows
from node.sim.cluster import WINDOW, Devnet, small_federation
from node.store.kubo import KuboNode
from tests.harness import run_cli, spawn_cli

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]


def run_daemon(cfg: Path, until: int, threads: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    args = ("node", "run", "--config", str(cfg), "--until-round", str(until), *extra)
    return spawn_cli(*args, log=log, threads=threads)


def _scrape_while_running(proc: subprocess.Popen[bytes], port: int, timeout: float) -> list[dict[str, float]]:
    """Every Prometheus scrape of a running daemon's /metrics (samples by name and labels), until it exits."""
    from prometheus_client.parser import text_string_to_metric_families

    scrapes, deadline = [], time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:  # not serving yet, or exiting
            time.sleep(0.2)
            continue
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        scrapes.append(samples)
        time.sleep(0.3)
    return scrapes


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.wait(timeout=max(1.0, deadline - time.monotonic()))


def final_model(log: Path) -> str:
    found = re.findall(r"closed; model ([0-9a-f]+)", log.read_text())
    assert found, log.read_text()[-2000:]
    return found[-1]


def _verify(net: Devnet, r: int, ipfs: str) -> subprocess.CompletedProcess[str]:
    args = ("audit", "verify", "--round", str(r), "--deployment", str(net.deployment), "--spec", str(net.spec))
    return run_cli(*args, "--ipfs", ipfs)


def test_three_daemons_agree_round_after_round(
    tmp_path: Path,
    mining_anvil: AnvilProcess,
    kubo_nodes: list[KuboNode],
    sample_csv: Path,
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    net = small_federation(tmp_path, mining_anvil, kubo_nodes, sample_csv)
    early = run_cli("node", "personalize", "--config", str(net.configs[0]))
    assert early.returncode == 1 and "no round has finalized yet" in early.stderr and "Traceback" not in early.stderr
    logs = [tmp_path / f"peer{i}.log" for i in range(3)]
    port = free_port()  # the first daemon logs JSON and serves Prometheus metrics
    observed = ("--log-format", "json", "--metrics-port", str(port))
    procs = [
        run_daemon(cfg, 2, threads, log, *(observed if i == 0 else ()))
        for i, (cfg, threads, log) in enumerate(zip(net.configs, (1, 2, 3), logs, strict=True))
    ]
    daemons += procs
    scrapes = _scrape_while_running(procs[0], port, 300)
    wait_all(procs, 300)
    assert [p.returncode for p in procs] == [0, 0, 0], [log.read_text()[-1500:] for log in logs]
    # its metrics, scraped while it ran: events counted, a round finalized on chain, its stake, the time spent
    assert scrapes, logs[0].read_text()[-1500:]
    last = scrapes[-1]
    assert last["fedchain_events_total{kind=committed}"] >= 1 and last["fedchain_events_total{kind=revealed}"] >= 1
    assert max(s.get("fedchain_rounds_closed{outcome=finalized}", 0) for s in scrapes) >= 1
    assert last["fedchain_rounds_closed{outcome=failed}"] == 0 and last["fedchain_stake_tokens{}"] > 0
    assert last["fedchain_work_seconds_total{work=train}"] > 0 and last["fedchain_up{}"] == 1
    assert last["fedchain_step_seconds_count{}"] >= 2
    stdout = [line for line in logs[0].read_text().splitlines() if not line.startswith("fedchain: warning:")]
    lines = [json.loads(line) for line in stdout]  # one JSON object a line (stderr's warnings are merged in)
    assert {"committed", "revealed", "adopted", "log"} <= {r["kind"] for r in lines}
    assert all({"time", "peer", "kind", "round", "details", "text"} <= r.keys() for r in lines)
    assert len({final_model(log) for log in logs}) == 1
    for r in (1, 2):
        info = net.fed.round(r)
        assert info.phase == Phase.FINALIZED and info.reveals == 3
        for log in logs:  # every daemon adopted exactly the chain's model of round r
            assert re.findall(rf"adopted round {r}'s model ([0-9a-f]+)", log.read_text()) == [
                info.model_hash.hex()[:12]
            ]
    assert final_model(logs[0]) == net.fed.round(2).model_hash.hex()[:16]
    out = _verify(net, 2, net.ipfs[2])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "round 2 verifies" in out.stdout and out.stdout.count(": ok") == 3
    bad = _verify(net, 3, net.ipfs[0])  # round 3 is open: nothing to verify yet
    assert bad.returncode == 1 and "not finalized" in bad.stderr
    # each company chooses its own model from round 2's, on its own rows, and keeps it beside its state
    out = run_cli("node", "personalize", "--config", str(net.configs[1]))
    assert out.returncode == 0, out.stdout + out.stderr
    saved = json.loads((tmp_path / "state1" / "personal.json").read_text())
    assert saved["round"] == 2 and saved["model_hash"] == "0x" + net.fed.round(2).model_hash.hex()
    assert f"uses {saved['choice']}:" in out.stdout and saved["local_rounds"] == 2
    assert {c["name"] for c in saved["candidates"]} >= {"global", "fine-tuned", "local"}
    assert (tmp_path / "state1" / "personal.npz").is_file()
    # the federation's model in use: prospects scored without a peer config (the federation is not sealed)
    prospects = tmp_path / "prospects.csv"
    header, rows = read_rows(sample_csv)
    prospects.write_text(
        "\n".join(",".join(r) for r in [["id", *header], *[[f"c{i}", *r] for i, r in enumerate(rows)]])
    )
    args = ("--deployment", str(net.deployment), "--spec", str(net.spec), "--ipfs", net.ipfs[1])
    out = run_cli("predict", "--input", str(prospects), "--top", "5", *args)
    assert out.returncode == 0, out.stderr
    top = out.stdout.splitlines()
    assert top[0].endswith(",score,rank,decile") and [line.split(",")[-2] for line in top[1:]] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    assert "round 2's model" in out.stderr  # the summary goes to stderr when the scores go to stdout
    out = run_cli("model", "export", "--config", str(net.configs[2]), "--out", str(tmp_path / "export"))
    assert out.returncode == 0, out.stderr
    card = json.loads((tmp_path / "export" / "model-card.json").read_text())
    assert card["round"] == 2 and card["model_hash"] == "0x" + net.fed.round(2).model_hash.hex()
    assert card["participants"] == sorted(card["participants"]) and len(card["participants"]) == 3
    assert set(card["paid"]) <= set(card["participants"]) and card["paid"]
    assert card["metrics"]["rows"] > 0 and card["metrics"]["lift_at_10"] > 1.0


def test_a_killed_peer_misses_a_round_and_rejoins_without_a_double_commit(
    tmp_path: Path,
    mining_chain: AnvilProcess | GethProcess,
    kubo_nodes: list[KuboNode],
    sample_csv: Path,
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    """On anvil and on geth: the round goes on past its reveal window without the killed peer (a
    timeout in real time, and a slashing if it died before revealing), and the restarted peer
    takes part again without committing twice."""
    net = small_federation(tmp_path, mining_chain, kubo_nodes, sample_csv, n=4)  # 3 of 4 votes still make quorum
    logs = [tmp_path / f"peer{i}.log" for i in range(4)]
    procs = [run_daemon(cfg, 3, 1, log) for cfg, log in zip(net.configs, logs, strict=True)]
    daemons += procs
    victim = procs[2]
    deadline = time.monotonic() + 120
    while "committed round 2" not in logs[2].read_text():  # then kill it, before or just after it reveals
        assert time.monotonic() < deadline and victim.poll() is None, logs[2].read_text()[-2000:]
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    # round 2 goes on without it: its reveal window runs out, then it enters its vote (round 3 opens)
    deadline = time.monotonic() + 4 * WINDOW + 60
    while net.fed.current_round() <= 2:
        assert time.monotonic() < deadline, "round 2 did not reach its vote without the killed peer"
        time.sleep(0.5)
    assert net.fed.round(2).phase in (Phase.VOTE, Phase.FINALIZED)
    restarted_log = tmp_path / "peer2-restarted.log"
    procs[2] = run_daemon(net.configs[2], 3, 1, restarted_log)
    daemons.append(procs[2])
    wait_all(procs, 300)
    assert [p.returncode for p in procs] == [0, 0, 0, 0], restarted_log.read_text()[-2000:]
    me = net.fed.members()[2]
    # Killed after its commit: slashed if it died before revealing; if it had revealed, the
    # others went on without its vote, or (restarted in time) it resumed and voted.
    assert net.fed.status(2, me).name in ("SLASHED", "REVEALED", "VOTED")
    assert net.fed.status(3, me).name in ("REVEALED", "VOTED")
    assert net.fed.round(2).phase == net.fed.round(3).phase == Phase.FINALIZED
    text = restarted_log.read_text()
    assert "AlreadyCommitted" not in text and "committed round 3" in text
    if net.fed.status(2, me).name == "SLASHED":
        assert "topped the stake up" in text
    assert len({final_model(log) for log in (logs[0], logs[1], logs[3], restarted_log)}) == 1


def test_sigterm_stops_a_waiting_daemon_cleanly(
    tmp_path: Path,
    anvil: AnvilProcess,
    kubo_nodes: list[KuboNode],
    sample_csv: Path,
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    net = small_federation(tmp_path, anvil, kubo_nodes, sample_csv)
    log = tmp_path / "peer0.log"
    proc = run_daemon(net.configs[0], 5, 1, log)  # alone: round 1 never opens
    daemons.append(proc)
    deadline = time.monotonic() + 120
    while "waiting for round 1 to open" not in log.read_text():
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert "SIGTERM: stopping" in text and text.rstrip().endswith("stopped")
    assert (tmp_path / "state0" / "state.json").exists()


def test_a_peer_refuses_a_spec_that_differs_from_the_chain(
    tmp_path: Path, anvil: AnvilProcess, kubo_nodes: list[KuboNode], sample_csv: Path
) -> None:
    net = small_federation(tmp_path, anvil, kubo_nodes, sample_csv)
    net.spec.write_text(net.spec.read_text().replace('"rule" = "median"', '"rule" = "fedavg"'))
    out = run_cli("node", "run", "--config", str(net.configs[0]), timeout=120)
    assert out.returncode == 1 and "the federation's spec is" in out.stderr and "Traceback" not in out.stderr


def test_demo_on_the_devnet_runs_a_process_per_peer(sample_csv: Path) -> None:
    data = ("--data", str(sample_csv), "--target", "y", "--positive", "yes", "--drop", "duration")
    out = run_cli("demo", "--devnet", *data, "--peers", "3", "--rounds", "2", "--json", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["devnet"] is True and len(doc["peers"]) == 3
    assert [r["status"] for r in doc["rounds"]] == ["finalized", "finalized"]
    assert all(r["participants"] == 3 for r in doc["rounds"])
    # scored by evaluation (the default): the daemons exchanged evaluations and agreed on round 1's value,
    # which round 2 paid; with 3 peers a company's value is the lower of two ratings, and may be 0
    assert doc["scoring"] == "evaluation"
    assert int(doc["rewards_paid"]) == sum(int(p["reward"]) for p in doc["peers"]) > 0


def test_demo_on_the_devnet_with_differential_privacy_and_sealing(sample_csv: Path) -> None:
    """Each daemon trains by DP-SGD and states on chain what it spent; the demo reads it from the audit trail.
    Sealed: the daemons (separate processes) publish byte-identical sealed models, and the demo follows every
    round as the spec's auditor (each round re-run and verified from the sealed updates)."""
    data = ("--data", str(sample_csv), "--target", "y", "--positive", "yes", "--drop", "duration")
    dp = ("--epsilon", "2", "--sealed")
    out = run_cli("demo", "--devnet", *data, "--peers", "3", "--rounds", "2", *dp, "--json", timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["scoring"] == "agreement" and doc["privacy"]["epsilon"] == 2.0 and doc["sealed"] is True
    assert all(r["votes"] == 3 for r in doc["rounds"]), doc["rounds"]  # every daemon voted for the same sealed model
    assert [r["status"] for r in doc["rounds"]] == ["finalized", "finalized"]
    assert all(1.9 < p["epsilon"] <= 2.001 for p in doc["peers"]), doc["peers"]  # thousandths, rounded up


def wait_until(what: str, check: Callable[[], bool], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {log.read_text()[-2000:]}"
        time.sleep(0.05)


def test_a_peer_killed_at_every_step_of_a_round_votes_as_if_it_never_was(
    tmp_path: Path,
    mining_anvil: AnvilProcess,
    kubo_nodes: list[KuboNode],
    sample_csv: Path,
    daemons: list[subprocess.Popen[bytes]],
) -> None:
    """Kill one daemon of three at each step of a round and restart it at once; every vote still agrees.

    With three peers and a 2/3 quorum, a restarted peer that voted for another model would leave
    the round short of unanimity (and, with a second such peer, fail it): every round must close
    finalized with all three revealers voting for the winning proposal.
    """
    net = small_federation(tmp_path, mining_anvil, kubo_nodes, sample_csv)
    logs = [tmp_path / f"peer{i}.log" for i in range(3)]
    last = 6
    procs = [run_daemon(cfg, last, 1, log) for cfg, log in zip(net.configs, logs, strict=True)]
    daemons += procs
    victim_logs = [logs[2]]

    def in_log(text: str) -> Callable[[], bool]:
        return lambda: text in victim_logs[-1].read_text()

    # (round, the moment to kill at, the signal): after commit (which carries its vote on the round
    # before), after reveal, mid-vote (round 4 voting: the victim is fetching and aggregating it, then
    # training round 5), mid-commit (SIGTERM), after its vote on the last round (finalize pending)
    moments: list[tuple[int, str, Callable[[], bool], signal.Signals]] = [
        (2, "after commit", in_log("committed round 2"), signal.SIGKILL),
        (3, "after reveal", in_log("revealed round 3"), signal.SIGKILL),
        (4, "mid-vote", lambda: net.fed.phase(4) == Phase.VOTE, signal.SIGKILL),
        (5, "mid-commit", lambda: net.fed.phase(5) == Phase.COMMIT, signal.SIGTERM),
        (6, "mid-finalize", in_log("voted round 6"), signal.SIGKILL),
    ]
    for r, what, moment, sig in moments:
        wait_until(f"round {r} {what}", moment, 4 * WINDOW + 120, victim_logs[-1])
        victim = procs[2]
        os.killpg(victim.pid, sig)
        victim.wait(timeout=60)
        victim_logs.append(tmp_path / f"peer2-restart{r}.log")
        procs[2] = run_daemon(net.configs[2], last, 1, victim_logs[-1])
        daemons.append(procs[2])
    wait_all(procs, 300)
    assert [p.returncode for p in procs] == [0, 0, 0], victim_logs[-1].read_text()[-2000:]
    text = "".join(log.read_text() for log in victim_logs)
    assert "AlreadyCommitted" not in text and "Traceback" not in text
    for r in range(1, last + 1):
        info = net.fed.round(r)
        assert info.phase == Phase.FINALIZED, (r, info)
        assert info.reveals == 3 and info.votes == 3, (r, info)
        assert net.fed.proposal_votes(r, info.winner) == 3, f"round {r}: a vote went elsewhere"
    assert len({final_model(log) for log in (logs[0], logs[1], victim_logs[-1])}) == 1


def test_daemons_wait_out_a_chain_outage_and_stop_with_one_line_when_it_comes_back_empty(
    tmp_path: Path, kubo_nodes: list[KuboNode], sample_csv: Path, daemons: list[subprocess.Popen[bytes]]
) -> None:
    saved = tmp_path / "chain.json"
    chain_node = start_anvil(log_path=tmp_path / "anvil.log", state_file=saved)
    try:
        net = small_federation(tmp_path, chain_node, kubo_nodes, sample_csv, n=3)
        logs = [tmp_path / f"peer{i}.log" for i in range(2)]
        procs = [run_daemon(cfg, 3, 1, log) for cfg, log in zip(net.configs[:2], logs, strict=True)]
        daemons += procs
        for log in logs:  # joined; round 1 is open, waiting for commits
            wait_until("the daemon to wait", lambda log=log: "waiting" in log.read_text(), 120, log)
        # an outage: the chain stops (saving its state) and comes back with it a few seconds later
        chain_node.stop()
        for log in logs:
            wait_until("the outage to be seen", lambda log=log: "waiting for RPC/IPFS" in log.read_text(), 60, log)
        time.sleep(3)
        chain_node = start_anvil(chain_node.port, log_path=tmp_path / "anvil-back.log", state_file=saved)
        for log in logs:
            wait_until("the chain to be back", lambda log=log: "answer again" in log.read_text(), 60, log)
            text = log.read_text()
            assert text.count("waiting for RPC/IPFS") == 1 and all(len(line) < 300 for line in text.splitlines())
        assert all(p.poll() is None for p in procs)
        # the chain comes back empty: each daemon says so in one line and exits non-zero
        chain_node.stop()
        chain_node = start_anvil(chain_node.port, log_path=tmp_path / "anvil-fresh.log")
        for p, log in zip(procs, logs, strict=True):
            assert p.wait(timeout=120) == 1, log.read_text()[-2000:]
            text = log.read_text()
            assert "Traceback" not in text and "BadFunctionCallOutput" not in text
            assert f"no contract at {net.fed.address} on chain 31337 any more" in text
            assert len([line for line in text.splitlines() if "no contract at" in line]) == 1
    finally:
        chain_node.stop()
