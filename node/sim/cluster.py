"""A small federation on real parts, for tests and fault runs: founders deployed, one peer config each.

`small_federation` deploys a spec for `n` founders on a running chain node,
splits a CSV among them, and writes each one's rows, keystore and peer config
(chain RPC URL and IPFS API address from `links`, by default the nodes' own);
`spawn_daemon` runs `fedchain node run` for a config as its own process, inside
a network namespace when given its `ip netns exec` prefix.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account

from ledger.chain import connect
from ledger.client import FederationClient
from ledger.deploy import deploy
from ledger.devnet import AnvilProcess, GethProcess
from ledger.keystore import create_keystore
from ledger.spec import spec_from_dict
from node.horizontal.config import PeerConfig
from node.learn.data import infer_schema, read_rows
from node.store.kubo import KuboNode

__all__ = ["Devnet", "small_federation", "spawn_daemon", "write_sample"]

ROOT = Path(__file__).resolve().parents[2]  # this checkout: its packages come first in a daemon's path
WINDOW = 20


@dataclass
class Devnet:
    root: Path
    configs: list[Path]
    fed: FederationClient
    spec: Path
    deployment: Path
    ipfs: list[str]
    block: int = 0  # the deployment's block: where the audit trail starts
    members: list[str] = field(default_factory=list)  # each config's member address, in config order


def small_federation(
    root: Path,
    anvil: AnvilProcess | GethProcess,
    kubo: list[KuboNode],
    csv_path: Path,
    n: int = 3,
    links: Callable[[int], tuple[str, str]] | None = None,
    window: int = WINDOW,
) -> Devnet:
    """`n` founders deployed on `anvil`, each with its share of `csv_path`, a keystore and a peer config
    (its chain RPC URL and IPFS API address from `links(i)`, by default the nodes' own)."""
    chain = connect(anvil.url, anvil.chain_id)
    schema, _ = infer_schema(csv_path, "y", "yes", drop=["duration"])
    header, rows = read_rows(csv_path)
    (root / "pw").write_text("secret\n")
    deployer, *members = [Account.create() for _ in range(n + 1)]
    for a in (deployer, *members):
        chain.fund(a.address, 10**19)
    data = {
        "chain": {  # the dev-net chains make a block a second
            "commit_window": window,
            "reveal_window": window,
            "vote_window": window,
            "min_peers": 2,
            "block_time": 1,
        },
        "members": {"founders": [m.address for m in members]},
        "data": schema.to_spec(),
        "model": {"kind": "logreg", "seed": 0},
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.01, "optimizer": "adam", "seed": 0},
        "aggregation": {"rule": "median"},
    }
    spec = spec_from_dict(data)
    (root / "spec.toml").write_text(spec.to_toml())
    deployment = deploy(chain, deployer, spec)
    deployment.save(root / "deployment.json")
    configs = []
    for i, m in enumerate(members):
        part = [r for j, r in enumerate(rows) if j % n == i]
        (root / f"company{i}.csv").write_text(",".join(header) + "\n" + "\n".join(",".join(r) for r in part) + "\n")
        create_keystore(root / f"key{i}.json", "secret", "0x" + m.key.hex())
        rpc, ipfs = links(i) if links is not None else (anvil.url, kubo[i].api)
        cfg = PeerConfig(
            name=f"company{i}",
            data=Path(f"company{i}.csv"),
            keystore=Path(f"key{i}.json"),
            deployment=Path("deployment.json"),
            spec=Path("spec.toml"),
            rpc=rpc,
            ipfs=ipfs,
            state=Path(f"state{i}"),
            password_file=Path("pw"),
            poll_seconds=0.2,
        )
        cfg.save(root / f"peer{i}.toml")
        configs.append(root / f"peer{i}.toml")
    fed = FederationClient(chain, deployment.federation)
    ipfs_apis = [k.api for k in kubo]
    addresses = [m.address for m in members]
    return Devnet(
        root, configs, fed, root / "spec.toml", root / "deployment.json", ipfs_apis, deployment.block, addresses
    )


def write_sample(path: Path, every: int = 7) -> Path:
    """Every `every`-th row of the bundled bank data (it is sorted by date, so no head will do) at `path`."""
    from node.datasets import DEFAULT_DATA

    with gzip.open(DEFAULT_DATA, "rt") as fh:
        path.write_text("".join(line for i, line in enumerate(fh) if i == 0 or i % every == 0))
    return path


def spawn_daemon(
    cfg: Path, until: int, log: Path, *extra: str, prefix: Sequence[str] = (), threads: int = 1
) -> subprocess.Popen[bytes]:
    """`fedchain node run` for `cfg` until round `until` closes, in its own process group, its output in
    `log`; run through `prefix` (e.g. `ip netns exec NS`, which keeps the pid) when given."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    args = ["node", "run", "--config", str(cfg), "--until-round", str(until), *extra]
    with log.open("wb") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "node.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
