"""The README's dev-net walk-through, read from the README and run command by command as a user types it.

Two changes only, both what the README offers: the dev-net is started with
`--state-dir D` on a non-default port (every later command finds it through
`$FEDCHAIN_STATE_DIR`), and the second Kubo node's `API_PORT` is the one
`devnet status` lists. Daemons run in the background with `--until-round 1`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.devnet import free_port
from tests.harness import ROOT, cli_env

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]


def walkthrough() -> list[list[str]]:
    """The commands of the README's dev-net section, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## A federation on a dev-net.*?```sh\n(.*?)```", text, re.S)
    assert block, "the README has no dev-net walk-through"
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def test_the_readme_walkthrough_on_a_devnet_in_its_own_state_dir_and_port(tmp_path: Path) -> None:
    state, port = tmp_path / "dn", free_port()
    env = cli_env(FEDCHAIN_PASSWORD="devnet", FEDCHAIN_STATE_DIR=str(state))
    daemons: list[subprocess.Popen[bytes]] = []
    commands = walkthrough()
    assert commands[0][:1] == ["source"] and commands[1][:2] == ["export", "FEDCHAIN_PASSWORD=devnet"]

    def run(argv: list[str]) -> str:
        cmd = [sys.executable, *argv[1:]] if argv[0] == "python" else [sys.executable, "-m", "node.cli", *argv[1:]]
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, f"{shlex.join(argv)}\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}"
        return out.stdout

    try:
        for typed in commands[2:]:
            argv = list(typed)
            assert argv[0] in ("fedchain", "python"), argv
            if argv[1:3] == ["devnet", "up"]:
                argv = [*argv, "--port", str(port)]  # not 8545: the state dir says where it is
            if "API_PORT" in " ".join(argv):
                status = run(["fedchain", "devnet", "status"])
                api = re.findall(r"kubo +(/ip4/127\.0\.0\.1/tcp/\d+/http)", status)[1]
                argv = [a.replace("/ip4/127.0.0.1/tcp/API_PORT/http", api) for a in argv]
            if argv[1:3] == ["node", "run"]:
                log = (tmp_path / f"{argv[-1]}.log").open("wb")
                daemons.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "node.cli", *argv[1:], "--until-round", "1"],
                        cwd=tmp_path,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                continue
            if argv[1:3] == ["audit", "rounds"]:  # the daemons have run round 1 by now
                for d in daemons:
                    assert d.wait(timeout=600) == 0, (tmp_path / "bank.toml.log").read_text()[-1500:]
            out = run(argv)
            if argv[1:3] == ["devnet", "up"]:
                assert f"127.0.0.1:{port}" in out and (state / "state.json").exists()
            if argv[1:3] == ["audit", "rounds"]:
                assert "finalized" in out
            if argv[1:3] == ["audit", "verify"]:
                assert "round 1 verifies" in out
            if argv[1:3] == ["node", "personalize"]:
                assert "uses " in out and (tmp_path / ".fedchain-bank" / "personal.json").is_file()
            if argv[1] == "predict":  # the prospects scored: their columns, then score, rank and decile
                scored = (tmp_path / argv[argv.index("--out") + 1]).read_text().splitlines()
                prospects = (tmp_path / "prospects.csv").read_text().splitlines()
                assert scored[0] == prospects[0] + ",score,rank,decile" and "round 1's model" in out
                ranks = [int(line.rsplit(",", 2)[1]) for line in scored[1:]]
                # a call list: the 500 best, best first; else every prospect in file order, each rank once
                everyone = list(range(1, len(prospects)))
                assert ranks == list(range(1, 501)) if "--top" in argv else sorted(ranks) == everyone
            if argv[1:3] == ["model", "export"]:
                card = json.loads((tmp_path / "bank-model" / "model-card.json").read_text())
                assert card["round"] == 1 and card["metrics"]["measured_on"] == "bank.csv"
                assert (tmp_path / "bank-model" / "model.onnx").stat().st_size > 0
        config = (tmp_path / "bank.toml").read_text()
        assert f"127.0.0.1:{port}" in config  # node init took the dev-net's endpoints
        assert not json.loads((state / "state.json").read_text())["kubo"]  # `devnet down` ran last
    finally:
        for d in daemons:
            if d.poll() is None:
                os.killpg(d.pid, signal.SIGKILL)
                d.wait()
        subprocess.run(
            [sys.executable, "-m", "node.cli", "devnet", "down"], env=env, capture_output=True, timeout=120, check=False
        )
