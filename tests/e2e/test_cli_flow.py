"""The README's dev-net walk-through, command by command, as a user types it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from ledger.devnet import free_port
from tests.harness import run_cli, spawn_cli

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]
FOUNDERS = ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"]


def ok(cwd: Path, *args: str, timeout: float = 300) -> str:
    out = run_cli(*args, cwd=cwd, password="devnet", timeout=timeout)
    assert out.returncode == 0, f"fedchain {' '.join(args)}\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}"
    return out.stdout


def test_the_devnet_walkthrough(tmp_path: Path, sample_csv: Path) -> None:
    state = ["--state-dir", str(tmp_path / "dn")]
    ok(tmp_path, "devnet", "up", *state, "--port", str(free_port()), "--kubo", "2")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        net = json.loads((tmp_path / "dn" / "state.json").read_text())
        rpc, apis = f"http://127.0.0.1:{net['anvil']['port']}", [k["api_port"] for k in net["kubo"]]
        for i, name in enumerate(("deployer", "bank", "hotel")):
            ok(tmp_path, "account", "new", "--keystore", f"{name}.json", "--dev-key", str(i))
        ok(
            tmp_path,
            "spec",
            "init",
            "--data",
            str(sample_csv),
            "--target",
            "y",
            "--positive",
            "yes",
            "--drop",
            "duration",
            "--founders",
            *FOUNDERS,
            "--out",
            "spec.toml",
        )
        ok(
            tmp_path,
            "deploy",
            "--rpc",
            rpc,
            "--keystore",
            "deployer.json",
            "--spec",
            "spec.toml",
            "--out",
            "deployment.json",
        )
        lines = sample_csv.read_text().splitlines()
        for i, name in enumerate(("bank", "hotel")):
            (tmp_path / f"{name}.csv").write_text("\n".join([lines[0], *lines[1 + i :: 2]]) + "\n")
            ok(
                tmp_path,
                "node",
                "init",
                "--name",
                name,
                "--data",
                f"{name}.csv",
                "--keystore",
                f"{name}.json",
                "--spec",
                "spec.toml",
                "--rpc",
                rpc,
                "--ipfs",
                f"/ip4/127.0.0.1/tcp/{apis[i]}/http",
                "--out",
                f"{name}.toml",
            )
        for name in ("bank", "hotel"):
            args = ("node", "run", "--config", f"{name}.toml", "--until-round", "1")
            procs.append(spawn_cli(*args, cwd=tmp_path, password="devnet", log=tmp_path / f"{name}.log"))
        for p in procs:
            assert p.wait(timeout=300) == 0, (tmp_path / "bank.log").read_text()[-1500:]
        table = ok(tmp_path, "audit", "rounds", "--deployment", "deployment.json")
        assert "finalized" in table
        verify = ok(
            tmp_path,
            "audit",
            "verify",
            "--round",
            "1",
            "--spec",
            "spec.toml",
            "--ipfs",
            f"/ip4/127.0.0.1/tcp/{apis[1]}/http",
        )
        assert "round 1 verifies" in verify
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        ok(tmp_path, "devnet", "down", *state)
