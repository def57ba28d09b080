"""A vertical task the way a data team runs one: each party's part from its own CSV, the spec, the
deployment, and a `fedchain vertical run` process per member, on a real anvil (the members share an
embedded store directory here; `test_vertical_devnet.py` gives each its own Kubo node)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from ledger.chain import connect
from ledger.client import TokenClient
from ledger.deploy import deploy_contract
from ledger.devnet import AnvilProcess
from ledger.keystore import create_keystore
from ledger.vertical import Stage, VerticalTaskClient
from tests.harness import cli_env

pytestmark = [pytest.mark.anvil]

UNIT = 10**18
PARTIES = {
    "campaign": ["contact", "day", "month", "campaign", "pdays", "previous", "poutcome", "y"],
    "demographics": ["age", "job", "marital", "education"],
    "finance": ["default", "balance", "housing", "loan"],
}


def _fedchain(*args: str, cwd: Path, fails: bool = False) -> str:
    """The command's output (stdout; stderr if it is to fail, with exit code 1)."""
    run = subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**cli_env(), "FEDCHAIN_PASSWORD": "pw"},
        check=False,
    )
    assert run.returncode == (1 if fails else 0), run.stderr
    return run.stderr if fails else run.stdout


def _split(source: Path, tmp: Path) -> None:
    """Each party's CSV: the customer id and its columns, for a random 90% of the customers."""
    with source.open() as fh:
        rows = list(csv.DictReader(fh))[:6000]
    rng = np.random.default_rng(3)
    for name, columns in PARTIES.items():
        keep = rng.random(len(rows)) < 0.9
        with (tmp / f"{name}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["customer", *columns])
            w.writerows([r["customer"], *(r[c] for c in columns)] for r, k in zip(rows, keep, strict=True) if k)


def test_parts_spec_deploy_and_a_daemon_per_member_pay_the_parties(
    bank_sample: Path, anvil: AnvilProcess, tmp_path: Path
) -> None:
    _split(bank_sample, tmp_path)
    chain = connect(anvil.url)
    accounts = {name: Account.create() for name in PARTIES}
    for name, a in accounts.items():
        chain.fund(a.address, 10 * UNIT)
        create_keystore(tmp_path / f"{name}.json", "pw", "0x" + a.key.hex())
    owner = accounts["campaign"]
    token_address, _ = deploy_contract(chain, owner, "RewardToken", "T", "T", 10**6 * UNIT, owner.address)
    token = TokenClient(chain, token_address)
    for name in ("demographics", "finance"):
        token.transfer(owner, accounts[name].address, 100 * UNIT)

    _fedchain(
        "vertical",
        "part",
        "--data",
        "campaign.csv",
        "--name",
        "campaign",
        "--id",
        "customer",
        "--keystore",
        "campaign.json",
        "--target",
        "y",
        "--positive",
        "yes",
        "--out",
        "campaign.part.json",
        cwd=tmp_path,
    )
    for name in ("demographics", "finance"):
        _fedchain(
            "vertical",
            "part",
            "--data",
            f"{name}.csv",
            "--name",
            name,
            "--id",
            "customer",
            "--keystore",
            f"{name}.json",
            "--out",
            f"{name}.part.json",
            cwd=tmp_path,
        )
    part = json.loads((tmp_path / "finance.part.json").read_text())
    assert set(part) == {"name", "address", "columns", "id_column", "numeric", "categorical", "rows"}
    _fedchain(
        "vertical",
        "spec",
        "--owner",
        "campaign.part.json",
        "--party",
        "demographics.part.json",
        "--party",
        "finance.part.json",
        "--epochs",
        "4",  # 3 steps an epoch on this sample: fewer leave the model's test AUC to chance
        "--token",
        token_address,
        cwd=tmp_path,
    )
    out = _fedchain("vertical", "deploy", "--keystore", "campaign.json", "--rpc", anvil.url, cwd=tmp_path)
    assert "deployed" in out
    deployment = json.loads((tmp_path / "task-deployment.json").read_text())

    def member(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node.cli",
                "vertical",
                "run",
                "--spec",
                "task.json",
                "--deployment",
                "task-deployment.json",
                "--name",
                name,
                "--data",
                f"{name}.csv",
                "--keystore",
                f"{name}.json",
                "--ipfs",
                "embedded:store",
                "--poll",
                "0.2",
                "--result",
                f"{name}.result.json",
                *(() if name == "campaign" else ("--serve",)),  # the parties stay on to answer scoring requests
            ],
            cwd=tmp_path,
            env={**cli_env(), "FEDCHAIN_PASSWORD": "pw"},
            stdout=(tmp_path / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    procs = [member(name) for name in PARTIES]
    task = VerticalTaskClient(chain, deployment["task"])
    try:
        deadline = time.monotonic() + 120
        while task.stage() != Stage.TRAINING:  # the finance party is killed as training starts, and restarted
            assert time.monotonic() < deadline and procs[2].poll() is None, "training did not start"
            time.sleep(0.1)
        os.killpg(procs[2].pid, 9)
        procs[2].wait()
        procs[2] = member("finance")
        assert procs[0].wait(timeout=300) == 0, (tmp_path / "campaign.log").read_text()[-2000:]
        assert task.stage() == Stage.PAID
        deadline = time.monotonic() + 60
        while any(task.owed(accounts[n].address) for n in ("demographics", "finance")):  # they claim, then serve
            assert time.monotonic() < deadline, "the parties did not claim"
            time.sleep(0.2)
        _score_prospects(tmp_path, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
                p.wait()
    assert "finance: resumed from" in (tmp_path / "finance.log").read_text()
    assert not any(task.party(accounts[n].address).dropped for n in ("demographics", "finance"))
    paid = [token.balance_of(accounts[n].address) - 100 * UNIT for n in ("demographics", "finance")]
    assert sum(paid) == 900 * UNIT + 2 * 100 * UNIT - 200 * UNIT  # the bounty; stakes came back
    result = json.loads((tmp_path / "campaign.result.json").read_text())
    assert len(result["rounds"]) == 4 and result["federated_auc"] > 0.6
    assert (tmp_path / "demographics.seal.pem").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")


def _score_prospects(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """The owner scores prospects with `fedchain vertical score`: some customers both parties hold, some
    unknown to them; then again with the finance party stopped."""
    with (tmp / "campaign.csv").open() as fh:
        rows = list(csv.DictReader(fh))[:300]
    rows += [{**rows[i], "customer": f"NEW{i}"} for i in range(20)]  # prospects no party has heard of
    with (tmp / "prospects.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[c for c in rows[0] if c != "y"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    score = ["vertical", "score", "--spec", "task.json", "--deployment", "task-deployment.json", "--name", "campaign"]
    score += ["--data", "prospects.csv", "--keystore", "campaign.json", "--ipfs", "embedded:store", "--poll", "0.2"]
    out = _fedchain(*score, "--wait", "120", cwd=tmp)
    assert "scored 320 of 320 prospects" in out and "demographics: held" in out and "finance: held" in out
    scored = list(csv.DictReader((tmp / "scored.csv").open()))
    assert [r["customer"] for r in scored] == [r["customer"] for r in rows]
    assert sorted(int(r["rank"]) for r in scored) == list(range(1, 321))
    assert all(0 < float(r["score"]) < 1 for r in scored)
    assert all(r["missing"] == "demographics;finance" for r in scored[300:])  # the mean embeddings stood in
    assert sum(r["missing"] == "" for r in scored[:300]) > 200  # most are held by both (90% overlap each)

    procs[2].send_signal(signal.SIGTERM)  # the finance party goes offline
    assert procs[2].wait(timeout=30) == 0, (tmp / "finance.log").read_text()[-2000:]
    out = _fedchain(*score, "--wait", "5", "--out", "offline.csv", cwd=tmp)
    assert "finance: did not answer within 5 s" in out and "scored 320 of 320" in out
    offline = list(csv.DictReader((tmp / "offline.csv").open()))
    assert all("finance" in r["missing"] for r in offline)
    changed = [a["score"] != b["score"] for a, b in zip(scored, offline, strict=True)]
    assert any(changed[:300])  # finance's embeddings mattered for the customers it holds
    assert "scoring request 0: sent the embeddings" in (tmp / "demographics.log").read_text()
    wrong = {
        "is a feature party": ("--name", "finance", "--keystore", "finance.json"),
        "no trained model here": ("--model", "nowhere.npz"),
    }
    for message, change in wrong.items():
        args = list(score)
        for flag, value in zip(change[::2], change[1::2], strict=True):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        stderr = _fedchain(*args, cwd=tmp, fails=True)
        assert message in stderr and len(stderr.splitlines()) == 1, stderr
