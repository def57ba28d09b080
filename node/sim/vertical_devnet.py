"""`fedchain demo --vertical --devnet`: the cross-domain task on real parts, one process per party.

Starts an anvil (a block per transaction) and one Kubo node per party in a
private swarm, splits the data as the embedded demo does, writes each party's
CSV (its id column and its columns; the owner's labels too), keystore, password
file and the task spec, deploys the task, and runs `fedchain vertical run` for
every party as its own process, each with its own Kubo node (the feature
parties with `--serve`). Once the task is paid, the owner scores its test
customers with `fedchain vertical score`, asking the parties' processes; then
the parties are stopped. It reads what each measured, and builds the same
document as the embedded demo. Everything it started is stopped at the end,
whatever happens.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ledger.chain import connect
from ledger.keystore import create_keystore
from node.errors import NodeError
from node.learn.model import auc
from node.sim.devnet import kill_process, start_parts
from node.sim.vertical import Setup, VerticalConfig, summary

__all__ = ["run_vertical_devnet"]

WINDOW = 120  # seconds a member may stay silent before it can be timed out
DEADLINE = 900  # seconds the whole task may take


def _write_csv(path: Path, id_column: str, columns: list[str], ids: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([id_column, *columns])
        w.writerows([k, *r] for k, r in zip(ids, rows, strict=True))


def run_vertical_devnet(
    cfg: VerticalConfig, out: Callable[[str], None] | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """`run_vertical_demo` on a dev-net (a process per party); the task's stage through `progress`."""
    say = out or (lambda _line: None)
    status = progress or (lambda _line: None)
    if cfg.silent or cfg.garbling:
        raise NodeError("silent or garbling parties run on the embedded default only, not with --devnet")
    with tempfile.TemporaryDirectory(prefix="fedchain-vertical-devnet-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        n = len(cfg.parties)
        status("starting anvil and the Kubo nodes")
        anvil, kubo = start_parts(stack, root, n, block_time=None)
        chain = connect(anvil.url, anvil.chain_id)
        setup = Setup.deploy(cfg, chain, window=WINDOW)
        say(setup.banner(f"a dev-net (anvil {anvil.url}, {n} Kubo nodes, a process per party)"))
        setup.spec.save(root / "task.json")
        (root / "pw").write_text("devnet\n")
        procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        started = time.perf_counter()
        for i, (name, data) in enumerate(setup.data.items()):
            columns = list(data.columns)
            rows = data.rows
            if name == setup.spec.owner.name:  # the owner's labels, as its CSV would hold them
                columns.append(cfg.target)
                labels = ["yes" if v else "no" for v in setup.labels]
                rows = [[*r, lab] for r, lab in zip(rows, labels, strict=True)]
            _write_csv(root / f"{name}.csv", setup.spec.id_column, columns, data.ids, rows)
            create_keystore(root / f"{name}.json", "devnet", "0x" + setup.accounts[name].key.hex())
            args = [
                sys.executable, "-m", "node.cli", "vertical", "run",
                "--spec", "task.json", "--task", setup.task.address, "--name", name,
                "--data", f"{name}.csv", "--keystore", f"{name}.json", "--password-file", "pw",
                "--rpc", anvil.url, "--ipfs", kubo[i].api, "--from-block", str(setup.block),
                "--poll", "0.2", "--result", f"{name}.result.json",
            ]  # fmt: skip
            args += ["--sample-seed", str(cfg.seed)] if name == setup.spec.owner.name else ["--serve"]
            log = (root / f"{name}.log").open("wb")
            proc = subprocess.Popen(
                args, cwd=root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
            stack.callback(kill_process, proc)
            procs.append((name, proc))
        psi_seconds = _wait(setup, procs, root, started, say, status)
        owner = json.loads((root / f"{setup.spec.owner.name}.result.json").read_text())
        scoring = _score(setup, owner["test_rows"], root, kubo[0].api, anvil.url, say)
        for name, proc in procs[1:]:  # the parties served; now they stop
            proc.terminate()
            if proc.wait(timeout=60) != 0:
                tail = (root / f"{name}.log").read_text()[-800:]
                raise NodeError(f"party {name} exited with {proc.returncode}: {tail}")
        measured = [json.loads((root / f"{name}.result.json").read_text()) for name, _ in procs]
        psi = {"owner_rows": len(setup.owner.ids), "intersection": setup.task.intersection(), "seconds": psi_seconds}
        doc = setup.document(psi, measured, devnet=True)
        doc["scoring"] = scoring
        doc["seconds"] = round(time.perf_counter() - started, 1)
    summary(doc, say)
    return doc


def _score(
    setup: Setup, rows: list[int], root: Path, ipfs: str, rpc: str, say: Callable[[str], None]
) -> dict[str, Any]:
    """The owner scores its test customers with `fedchain vertical score` (its own process), asking the
    parties' processes; the scores' AUC on the owner's labels."""
    owner = setup.owner
    name = owner.name
    ids = [owner.ids[r] for r in rows]
    _write_csv(root / "prospects.csv", setup.spec.id_column, owner.columns, ids, owner.aligned(rows))
    args = [
        sys.executable, "-m", "node.cli", "vertical", "score",
        "--spec", "task.json", "--task", setup.task.address, "--name", name, "--data", "prospects.csv",
        "--keystore", f"{name}.json", "--password-file", "pw", "--rpc", rpc, "--ipfs", ipfs,
        "--from-block", str(setup.block), "--poll", "0.2", "--wait", "300", "--out", "scored.csv",
    ]  # fmt: skip
    started = time.perf_counter()
    run = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600, check=False)
    if run.returncode != 0:
        raise NodeError(f"scoring failed: {run.stderr.strip()[-800:]}")
    seconds = time.perf_counter() - started
    with (root / "scored.csv").open() as fh:
        scored = list(csv.DictReader(fh))
    logits = [math.log(float(r["score"]) / (1 - float(r["score"]))) for r in scored if r["score"]]
    labels = setup.labels[[r for r, s in zip(rows, scored, strict=True) if s["score"]]]
    held = {m.name: sum(m.name not in s["missing"].split(";") for s in scored) for m in setup.spec.parties}
    say(f"  scored {len(logits)} test customers with `fedchain vertical score` in {seconds:.1f} s")
    return {
        "prospects": len(rows),
        "scored": len(logits),
        "held": held,
        "seconds": round(seconds, 2),
        "auc": round(auc(labels, np.array(logits)), 6) if logits else None,
    }


def _wait(
    setup: Setup,
    procs: list[tuple[str, subprocess.Popen[bytes]]],
    root: Path,
    started: float,
    say: Callable[[str], None],
    progress: Callable[[str], None] = lambda _line: None,
) -> float:
    """Follow the task on the chain until the owner's process has exited and the parties have claimed
    (they stay on to serve scoring requests); returns the PSI's seconds."""
    psi_seconds, epoch = 0.0, -1
    task, parties = setup.task, [setup.accounts[n].address for n in setup.spec.names]
    while procs[0][1].poll() is None or any(task.owed(a) for a in parties):
        if any(p.poll() is not None for _, p in procs[1:]):
            break
        if time.perf_counter() - started > DEADLINE:
            raise NodeError(f"the dev-net task did not finish in {DEADLINE} s (logs in {root})")
        if not psi_seconds and setup.task.intersection():
            psi_seconds = round(time.perf_counter() - started, 2)
            say(f"  PSI done: {setup.task.intersection()} shared customers in {psi_seconds} s")
        e = setup.task.epoch()
        stage, seconds = setup.task.stage().name.lower(), time.perf_counter() - started
        progress(f"{stage}: epoch {e} of {setup.cfg.rounds} done ({seconds:.0f} s)")
        if e != epoch and psi_seconds and e < setup.cfg.rounds:
            epoch = e
            say(f"  epoch {e + 1} under way ({time.perf_counter() - started:.1f} s)")
        time.sleep(0.5)
    for name, p in procs:
        if p.poll() is not None and p.returncode != 0:
            tail = (root / f"{name}.log").read_text()[-800:]
            raise NodeError(f"party {name} exited with {p.returncode}: {tail}")
    return psi_seconds
