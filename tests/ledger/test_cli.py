"""The `fedchain` command as a user runs it: a subprocess against a real anvil."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ledger.chain import connect
from ledger.client import FederationClient
from ledger.devnet import AnvilProcess, free_port, pid_alive
from ledger.keystore import load_keystore
from tests.harness import CID, run_cli

DEV = [
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",  # anvil's accounts 1 and 2
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
]


def fedchain(*args: str, cwd: Path, password: str = "pw") -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, password=password)


def _fails_cleanly(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedchain: error:"), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def workdir(tmp_path: Path, anvil: AnvilProcess) -> Path:
    for i in range(3):
        assert fedchain("account", "new", "--keystore", f"k{i}.json", "--dev-key", str(i), cwd=tmp_path).returncode == 0
    (tmp_path / "spec.toml").write_text(
        "[chain]\nstake = 50\nmin_peers = 2\ncommit_window = 60\n"
        f"[members]\nfounders = {json.dumps(DEV)}\n[model]\nkind = 'logreg'\n"
    )
    return tmp_path


def test_deploy_join_and_audit(workdir: Path, anvil: AnvilProcess) -> None:
    out = fedchain(
        "deploy",
        "--rpc",
        anvil.url,
        "--chain-id",
        "31337",
        "--keystore",
        "k0.json",
        "--spec",
        "spec.toml",
        "--out",
        "dep.json",
        cwd=workdir,
    )
    assert out.returncode == 0, out.stderr
    dep = json.loads((workdir / "dep.json").read_text())
    assert dep["chain_id"] == 31337 and dep["founders"] == DEV
    for k in ("k1.json", "k2.json"):
        joined = fedchain("join", "--deployment", "dep.json", "--keystore", k, cwd=workdir)
        assert joined.returncode == 0, joined.stderr
    # play round 1 through the library, then read it back through the CLI
    chain = connect(anvil.url)
    fed = FederationClient(chain, dep["federation"])
    members = [load_keystore(workdir / k, "pw") for k in ("k1.json", "k2.json")]
    secrets = {m.address: (os.urandom(32), os.urandom(32)) for m in members}
    for m in members:
        fed.commit(m, 1, fed.commitment_for(1, m.address, *secrets[m.address]))
    for m in members:
        fed.reveal(m, 1, secrets[m.address][0], CID, secrets[m.address][1])
    for m in members:
        fed.vote(m, 1, b"\x42" * 32, CID, [3, 1])
    fed.finalize(members[0], 1)

    doc = json.loads(fedchain("audit", "rounds", "--deployment", "dep.json", "--json", cwd=workdir).stdout)
    assert doc["schema"] == "fedchain.audit/1" and doc["members"] == DEV
    first = doc["rounds"][0]
    assert (first["round"], first["status"], first["model_hash"], first["model_cid"]) == (
        1,
        "finalized",
        "0x" + "42" * 32,
        CID,
    )
    assert [r["member"] for r in first["commits"]] == DEV
    assert [int(r["amount"]) for r in first["rewards"]] == [int(7.5e18), int(2.5e18)]
    assert doc["rounds"][1]["status"] == "open"
    table = fedchain("audit", "rounds", "--deployment", "dep.json", cwd=workdir).stdout
    assert "finalized" in table and "open:commit" in table
    one = fedchain("audit", "round", "1", "--deployment", "dep.json", cwd=workdir).stdout
    assert "round 1: finalized" in one and DEV[0] in one and "7.5000" in one
    _fails_cleanly(fedchain("audit", "round", "9", "--deployment", "dep.json", cwd=workdir), "has not opened")

    # the federation at a glance: round 2 open with its clock, both members paid for round 1, the model
    status = json.loads(fedchain("status", "--deployment", "dep.json", "--json", cwd=workdir).stdout)
    assert status["schema"] == "fedchain.status/1" and status["current"]["round"] == 2
    assert status["current"]["phase"] == "commit" and 0 <= status["current"]["seconds_left"] <= 60
    assert [m["address"] for m in status["members"]] == DEV and {m["this_round"] for m in status["members"]} == {"none"}
    assert [m["earned"] for m in status["members"]] == [str(int(7.5e18)), str(int(2.5e18))]
    assert all(m["rounds_taken_part"] == 1 and m["active"] for m in status["members"])
    assert status["latest_models"] == [{"round": 1, "model_hash": "0x" + "42" * 32, "model_cid": CID}]
    assert status["finalized_rounds"] == 1 and status["failed"] == []
    text = fedchain("status", "--deployment", "dep.json", cwd=workdir).stdout
    assert "round 2: commit, " in text and "s left" in text and f"{DEV[0]}  yes" in text and "7.5000" in text
    watched = fedchain(
        "status", "--deployment", "dep.json", "--watch", "--count", "2", "--interval", "0.1", cwd=workdir
    )
    assert watched.returncode == 0 and watched.stdout.count("round 2: commit") == 2, watched.stderr  # not a TTY

    # rewards and claim
    def rewards(*who: str) -> dict[str, object]:
        out = fedchain("rewards", "--deployment", "dep.json", *who, "--json", cwd=workdir)
        assert out.returncode == 0, out.stderr
        doc: dict[str, object] = json.loads(out.stdout)
        return doc

    mine = rewards("--keystore", "k1.json")
    assert (mine["member"], mine["earned"], mine["unclaimed"], mine["claimed"]) == (
        DEV[0],
        "7500000000000000000",
        "7500000000000000000",
        "0",
    )
    assert mine["rounds"] == [{"round": 1, "score": 3, "reward": "7500000000000000000", "slashed": "0"}]
    assert rewards("--address", DEV[1].lower())["earned"] == "2500000000000000000"
    claimed = fedchain("claim", "--deployment", "dep.json", "--keystore", "k1.json", cwd=workdir)
    assert claimed.returncode == 0 and "claimed 7.5000 tokens" in claimed.stdout, claimed.stderr
    after = rewards("--keystore", "k1.json")
    assert (after["earned"], after["claimed"], after["unclaimed"]) == ("7500000000000000000",) * 2 + ("0",)
    assert fed.token.balance_of(DEV[0]) >= 7500000000000000000
    _fails_cleanly(
        fedchain("claim", "--deployment", "dep.json", "--keystore", "k1.json", cwd=workdir), "no unclaimed rewards"
    )
    _fails_cleanly(fedchain("rewards", "--deployment", "dep.json", "--address", "0x12", cwd=workdir), "not an Ethereum")
    text = fedchain("rewards", "--deployment", "dep.json", "--keystore", "k2.json", cwd=workdir).stdout
    assert "earned    2.5000" in text and "unclaimed 2.5000" in text


def test_bad_input_gets_one_clear_line(workdir: Path, anvil: AnvilProcess) -> None:
    deploy = ["deploy", "--keystore", "k0.json", "--spec", "spec.toml", "--out", "d.json"]
    port = free_port()
    _fails_cleanly(fedchain(*deploy, "--rpc", f"http://127.0.0.1:{port}", cwd=workdir), "no JSON-RPC answer")
    _fails_cleanly(fedchain(*deploy, "--rpc", anvil.url, "--chain-id", "1", cwd=workdir), "expected 1")
    _fails_cleanly(fedchain(*deploy, "--rpc", anvil.url, cwd=workdir, password="nope"), "wrong password")
    _fails_cleanly(
        fedchain("deploy", "--rpc", anvil.url, "--keystore", "none.json", "--spec", "spec.toml", cwd=workdir),
        "does not exist",
    )
    (workdir / "bad.toml").write_text("[chain\n")
    _fails_cleanly(
        fedchain("deploy", "--rpc", anvil.url, "--keystore", "k0.json", "--spec", "bad.toml", cwd=workdir),
        "not valid TOML",
    )
    _fails_cleanly(fedchain("audit", "rounds", "--deployment", "missing.json", cwd=workdir), "does not exist")
    (workdir / "corrupt.json").write_text("{not json")
    _fails_cleanly(fedchain("audit", "rounds", "--deployment", "corrupt.json", cwd=workdir), "not valid JSON")
    fake = {
        "chain_id": 31337,
        "federation": "0x" + "11" * 20,
        "token": "0x" + "22" * 20,
        "block": 0,
        "spec_hash": "0x",
        "deployer": DEV[0],
        "founders": DEV,
        "rpc_url": anvil.url,
    }
    (workdir / "nocode.json").write_text(json.dumps(fake))
    _fails_cleanly(fedchain("audit", "rounds", "--deployment", "nocode.json", cwd=workdir), "no contract at")
    (workdir / "otherchain.json").write_text(json.dumps({**fake, "chain_id": 5}))
    _fails_cleanly(fedchain("audit", "rounds", "--deployment", "otherchain.json", cwd=workdir), "deployment is on 5")
    (workdir / "fragile.toml").write_text(
        (workdir / "spec.toml").read_text() + "[aggregation]\nrule = 'multi-krum'\nattackers = 1\n"
    )
    _fails_cleanly(
        fedchain("deploy", "--rpc", anvil.url, "--keystore", "k0.json", "--spec", "fragile.toml", cwd=workdir),
        "attackers = 1 cannot be withstood: multi-krum needs n >= 2f + 3",
    )
    debug = fedchain("--debug", "audit", "rounds", "--deployment", "missing.json", cwd=workdir)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_contract_revert_is_named_on_the_command_line(workdir: Path, anvil: AnvilProcess) -> None:
    out = fedchain(
        "deploy", "--rpc", anvil.url, "--keystore", "k0.json", "--spec", "spec.toml", "--out", "dep.json", cwd=workdir
    )
    assert out.returncode == 0, out.stderr
    _fails_cleanly(fedchain("join", "--deployment", "dep.json", "--keystore", "k0.json", cwd=workdir), "NotAdmitted")


def test_devnet_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "dn")]
    up = fedchain("devnet", "up", *state, "--port", str(free_port()), "--kubo", "2", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    recorded = json.loads((tmp_path / "dn" / "state.json").read_text())
    pids = [recorded["anvil"]["pid"], *(k["pid"] for k in recorded["kubo"])]
    try:
        assert len(pids) == 3 and all(pid_alive(p) for p in pids)
        status = fedchain("devnet", "status", *state, cwd=tmp_path)
        assert status.returncode == 0 and "up, block" in status.stdout
        assert status.stdout.count("up, version") == 2
    finally:
        down = fedchain("devnet", "down", *state, cwd=tmp_path)
    assert down.returncode == 0
    assert not any(pid_alive(p) for p in pids)
    assert fedchain("devnet", "status", *state, cwd=tmp_path).returncode == 1


def test_doctor_finds_every_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = fedchain("doctor", cwd=tmp_path)
    assert out.returncode == 0, out.stdout
    for tool in ("solc", "anvil", "kubo", "geth", "web3", "torch", "pyarrow"):
        assert tool in out.stdout
    monkeypatch.setenv("FEDCHAIN_GETH", "/nonexistent/geth")
    missing = fedchain("doctor", cwd=tmp_path)
    assert missing.returncode == 1 and "geth: run `make setup` (builds go-ethereum" in missing.stdout
