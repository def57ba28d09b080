"""A non-editable install carries everything the main job needs: `pip install .`, then `fedchain demo`.

The package is built as a wheel (no network: the build backend comes from this
environment), installed without dependencies into a fresh virtual environment
that borrows this one's dependencies through a path file (not its editable
fedchain), and the demo runs from a directory far from the source tree. It
fails if the contract artifacts or the bundled data are not package data, or
if anything at run time reaches into the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_wheel_install_runs_the_demo_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("fedchain-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = next((env_dir / "lib").glob("python3.*/site-packages"))
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing may point back at a source tree
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        cwd=tmp_path,
        env=env,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [python, "-c", "import node, ledger; print(node.__file__); print(ledger.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(w).is_relative_to(site) for w in where), where  # the installed copy, not the source tree
    run = subprocess.run(
        [env_dir / "bin" / "fedchain", "demo", "--rounds", "1", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert [r["status"] for r in doc["rounds"]] == ["finalized"]
    assert doc["split_by"] == "job" and len(doc["peers"]) == 12
    assert 0.5 < doc["federated_auc"] <= 1.0 and 0.5 < doc["centralized_auc"] <= 1.0
