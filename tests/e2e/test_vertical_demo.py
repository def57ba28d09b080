"""`fedchain demo --vertical`: a cross-domain task end to end on the embedded chain and store.

A sample of the bank data with a customer id and a column of pure noise, split
into a campaign owner, a demographics party, a finance party and a party
holding only the noise: the noise party earns about nothing, a party that goes
silent is timed out and slashed and the task finishes without it, two processes
compute the same models, and bad input gets one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.chain import Chain, embedded_chain
from ledger.deploy import deploy_contract
from ledger.vertical import Kind, VerticalTaskClient, deploy_task
from node.errors import NodeError
from node.privacy.seal import SealKey
from node.sim.vertical import BANK_PARTIES, Setup, VerticalConfig, run_vertical_demo
from node.store import EmbeddedStore
from node.vertical.node import PartyNode
from tests.e2e.conftest import VERTICAL_ROWS

PARTIES = (*BANK_PARTIES, ("noise", ("noise",)))


def _cfg(path: Path, **kw: Any) -> VerticalConfig:
    return VerticalConfig(data=path, parties=PARTIES, id_column="customer", rounds=4, overlap=0.9, **kw)


def test_the_task_pays_by_value_and_beats_the_owner_alone(bank_sample: Path, tmp_path: Path) -> None:
    chain = embedded_chain()
    doc = run_vertical_demo(_cfg(bank_sample), chain=chain, store_dir=tmp_path / "store")
    _outsider_sees_sizes_only(chain, doc["task"], tmp_path / "store")
    assert doc["mode"] == "vertical"
    psi = doc["psi"]
    assert 0 < psi["intersection"] <= psi["owner_rows"] < VERTICAL_ROWS
    parties = {p["name"]: p for p in doc["parties"]}
    assert [p["role"] for p in doc["parties"]] == ["owner", "feature", "feature", "feature"]
    assert sum(p["share_bps"] for p in doc["parties"][1:]) == 10_000
    assert sum(p["reward"] for p in doc["parties"][1:]) == pytest.approx(900.0)
    assert parties["noise"]["share_bps"] < 1_000  # pure noise earns about nothing
    assert parties["noise"]["shapley"] < min(parties["demographics"]["shapley"], parties["finance"]["shapley"])
    assert len(doc["coalitions"]) == 8 and len(doc["rounds"]) == 4
    assert all(r["gas"] > 0 and r["bytes"] > 0 for r in doc["rounds"])
    assert doc["federated_auc"] > doc["label_party_auc"]
    assert doc["federated_auc"] >= 0.97 * doc["centralized_auc"]
    assert not Path(doc["data"]).is_absolute()
    # the paid task's model in use: the owner scored its test customers through a scoring request to every
    # party, and got the scores training computed for them
    scoring = doc["scoring"]
    assert scoring["held"] == {n: doc["rows"]["test"] for n in ("demographics", "finance", "noise")}
    assert scoring["scored"] == scoring["prospects"] == doc["rows"]["test"] and not scoring["failed"]
    assert scoring["auc"] == pytest.approx(doc["federated_auc"], abs=1e-6) and scoring["gas"] > 0


def _outsider_sees_sizes_only(chain: Chain, address: str, store: Path) -> None:
    """Everything in the store is sealed: no plaintext message format, no id; every message logged on
    chain is there, under the digest logged."""
    blobs = {p.name: p.read_bytes() for p in store.iterdir()}
    task = VerticalTaskClient(chain, address)
    logged = task.events("Message")
    table_cid = task.events("Settled")[0]["args"]["cid"]
    assert set(blobs) == {e["args"]["cid"] for e in logged} | {table_cid}  # the coalition table is public
    assert json.loads(blobs[table_cid])["players"]
    some_ids = [b"C%05d" % i for i in range(0, VERTICAL_ROWS, 97)]
    for event in logged:
        blob = blobs[event["args"]["cid"]]
        assert hashlib.sha256(blob).digest() == event["args"]["digest"]
        assert b"FCVEC1" not in blob and b"FCPSI1" not in blob
        assert not any(i in blob for i in some_ids)
    kinds = Counter(Kind(e["args"]["kind"]) for e in logged)
    assert kinds[Kind.PSI] == 3 * 3 and kinds[Kind.ALIGNMENT] == 3  # per party: its set and the owner's, both ways
    assert kinds[Kind.EMBEDDING] > kinds[Kind.GRADIENT] > 0
    assert kinds[Kind.QUERY] == kinds[Kind.REPLY] == 2 * 3  # scoring: two each way per party


def test_a_party_sending_garbage_is_refused_and_earns_nothing_while_the_others_train_on(bank_sample: Path) -> None:
    """From epoch 2 the noise party's embeddings are NaN: each is refused, the owner goes on without it
    (half a window, then its constant embedding), the others keep training every step, and it earns
    nothing. It keeps its stake: it commits every epoch, and garbage cannot be proven on chain."""
    steps: list[str] = []
    doc = run_vertical_demo(_cfg(bank_sample, garbling={"noise": 2}), progress=steps.append)
    # progress names each party's step in the PSI and the training, stage first
    assert {s.split(": ")[0] for s in steps} >= {"aligning", "training", "valuing"}
    assert {s.split(": ")[1] for s in steps if s.startswith("training: ")} >= {"demographics", "finance", "noise"}
    assert {s.split(": ")[1] for s in steps} == {name for name, _ in PARTIES}
    parties = {p["name"]: p for p in doc["parties"]}
    assert parties["noise"]["rejected"] >= 3 and parties["noise"]["share_bps"] == 0
    assert parties["noise"]["reward"] == pytest.approx(0.0)
    assert all(parties[n]["rejected"] == 0 and parties[n]["role"] == "feature" for n in ("demographics", "finance"))
    assert parties["demographics"]["reward"] + parties["finance"]["reward"] == pytest.approx(900.0)
    assert len(doc["rounds"]) == 4 and doc["federated_auc"] > doc["label_party_auc"]


def test_a_silent_party_is_timed_out_slashed_and_the_task_finishes_without_it(bank_sample: Path) -> None:
    doc = run_vertical_demo(_cfg(bank_sample, silent={"finance": 2}))
    parties = {p["name"]: p for p in doc["parties"]}
    assert parties["finance"]["role"] == "dropped"
    assert parties["finance"]["share_bps"] == 0
    assert parties["finance"]["reward"] == pytest.approx(-50.0)  # half its stake of 100 slashed
    # the bounty and the slashed half stake go to the parties still in the task
    assert parties["demographics"]["reward"] + parties["noise"]["reward"] == pytest.approx(950.0)
    assert "finance" not in {p for c in doc["coalitions"] for p in c["parties"]}
    assert set(doc["scoring"]["held"]) == {"demographics", "noise"}  # a dropped party is not asked to score
    assert len(doc["rounds"]) == 4 and doc["federated_auc"] > 0.6


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "node.cli", "demo", "--vertical", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return _finish(_start(*args))


def _party_args() -> list[str]:
    return [arg for name, cols in PARTIES for arg in ("--party", f"{name}={','.join(cols)}")]


def test_two_processes_train_the_same_models(bank_sample: Path) -> None:
    args = ["--data", str(bank_sample), "--target", "y", "--positive", "yes", "--id", "customer", "--rounds", "2"]
    procs = [_start(*args, *_party_args(), "--json") for _ in range(2)]  # at the same time, as peers would
    try:
        runs = [_finish(p) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for run in runs:
        assert run.returncode == 0, run.stderr
    docs = [json.loads(run.stdout) for run in runs]

    def outcome(doc: dict[str, Any]) -> Any:
        rounds = [(r["loss"], r["valid_auc"], r["bytes"]) for r in doc["rounds"]]
        return rounds, doc["parties"], doc["coalitions"], doc["federated_auc"], doc["psi"]["intersection"]

    assert outcome(docs[0]) == outcome(docs[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--party", "a"], "expected NAME=col1,col2"),
        (["--party", "a=age", "--party", "b=age,job"], "held by both 'a' and 'b'"),
        (["--party", "a=age", "--party", "b=nope"], "column 'nope' is not a feature"),
        (["--party", "a=age", "--party", "b=job", "--id", "nope"], "no id column 'nope'"),
        (["--party", "a=age", "--party", "b=job", "--silent", "c:2"], "--silent c: not a feature party"),
        (["--party", "a=age", "--party", "b=job", "--overlap", "1.5"], "--overlap 1.5"),
        (["--party", "a=age", "--party", "b=job", "--peers", "3"], "horizontal options"),
        (["--party", "a=age"], "--party NAME=cols at least twice"),
    ],
)
def test_bad_input_gets_one_line(bank_sample: Path, args: list[str], message: str) -> None:
    run = _cli("--data", str(bank_sample), "--target", "y", "--positive", "yes", *args)
    assert run.returncode != 0
    assert message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_member_refuses_a_task_deployed_with_other_terms_than_its_spec(bank_sample: Path) -> None:
    """The spec hash binds the spec, not the deployment's arguments: an owner that deploys the agreed hash
    with a larger stake, a full slash or its own token is refused by every member before it acts."""
    setup = Setup.deploy(_cfg(bank_sample), embedded_chain())
    owner = setup.accounts[setup.spec.owner.name]
    honest = setup.spec.terms.on_chain(setup.spec.model.epochs)
    party = setup.spec.parties[0].name
    other_token, _ = deploy_contract(setup.chain, owner, "RewardToken", "X", "X", 10**24, owner.address)
    for token, terms, why in (
        (setup.token.address, dataclasses.replace(honest, stake=honest.stake * 10), "other terms"),
        (setup.token.address, dataclasses.replace(honest, slash_bps=10_000), "other terms"),
        (other_token, honest, "pays in"),
    ):
        task, block = deploy_task(
            setup.chain, owner, token, setup.spec.hash, [m.address for m in setup.spec.parties], terms
        )
        with pytest.raises(NodeError, match=why):
            PartyNode(
                setup.spec,
                party,
                setup.data[party],
                np.zeros((1, 1), dtype=np.float32),
                account=setup.accounts[party],
                task=task,
                store=EmbeddedStore(bank_sample.parent / "s"),
                key=SealKey.generate(),
                from_block=block,
            )
