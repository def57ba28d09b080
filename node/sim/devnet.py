"""`fedchain demo --devnet`: the demo on real parts, one process per peer.

Starts an anvil that mines a block a second and a few Kubo nodes in a private
swarm, deploys, writes each company's training rows, keystore and peer config,
and runs `fedchain node run` for every company as its own process. It follows
the rounds on the chain, fetches each finalized model from IPFS to score it,
and compares as the embedded demo does. Everything it started is stopped at the
end, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from eth_account import Account

from ledger.chain import connect
from ledger.client import FederationClient
from ledger.deploy import deploy
from ledger.devnet import AnvilProcess, start_anvil
from ledger.keystore import create_keystore
from ledger.types import Phase
from node.core.codec import UpdateRejected
from node.errors import NodeError
from node.horizontal.config import PeerConfig
from node.horizontal.exchange import fetch_model
from node.horizontal.spec import NodeSpec
from node.horizontal.verify import verify_round
from node.learn.data import read_rows
from node.privacy.seal import SealKey
from node.privacy.sealing import Sealer, auditor_address
from node.sim.cluster import spawn_daemon
from node.sim.companies import DemoConfig, load_companies
from node.sim.demo import ROUND_HEADER, compare, demo_spec, document, personal_folds, round_row, summary
from node.sim.evaluate import concat, train_alone
from node.store import KuboStore, fetch_verified
from node.store.kubo import KuboNode, new_swarm_key, start_kubo

__all__ = ["kill_process", "run_devnet_demo", "spent_on_chain", "start_parts"]

WINDOW = 30
MAX_KUBO = 3


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_parts(
    stack: ExitStack, root: Path, n_kubo: int, block_time: float | None
) -> tuple[AnvilProcess, list[KuboNode]]:
    """Anvil and `n_kubo` Kubo nodes joined in a fresh private swarm, each stopped when `stack` closes."""
    anvil = start_anvil(log_path=root / "anvil.log", block_time=block_time)
    stack.callback(anvil.stop)
    key = new_swarm_key()
    kubo: list[KuboNode] = []
    for i in range(n_kubo):
        node = start_kubo(root / f"kubo-{i}", key)
        stack.callback(node.stop)
        for other in kubo:
            node.connect(other)
        kubo.append(node)
    return anvil, kubo


def spent_on_chain(fed: FederationClient, from_block: int) -> dict[str, float]:
    """Each member's last statement of the differential privacy it spent, from its commits' events (the
    daemons' own figures, read where an auditor reads them)."""
    from ledger.audit import read_audit

    said: dict[str, float] = {}
    for rec in sorted(read_audit(fed, from_block).rounds.values(), key=lambda r: r.round):
        said.update({c["member"]: c["epsilon"] for c in rec.commits if "epsilon" in c})
    return said


def run_devnet_demo(
    cfg: DemoConfig,
    out: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    links: Callable[[int, str, str], tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """`run_demo` on a dev-net: anvil, Kubo nodes and one `fedchain node run` process per company, the
    table printed through `out` as the chain closes each round, the rounds' state through `progress`.
    `links(i, rpc, ipfs)` gives company i's chain RPC URL and IPFS API address in place of the nodes'
    own (the fault benchmark puts a toxiproxy on each)."""
    say = out or (lambda _line: None)
    status = progress or (lambda _line: None)
    status(f"loading {cfg.data.name}")
    schema, companies = load_companies(cfg, say)
    header, rows = read_rows(cfg.data)
    test_all = concat([c.test for c in companies])
    with tempfile.TemporaryDirectory(prefix="fedchain-devnet-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        status("starting anvil and the Kubo nodes")
        anvil, kubo = start_parts(stack, root, min(MAX_KUBO, len(companies)), block_time=1)
        chain = connect(anvil.url, anvil.chain_id)
        deployer, *accounts = [Account.create() for _ in range(len(companies) + 1)]
        for a in (deployer, *accounts):
            chain.fund(a.address, 10**19)
        auditor = SealKey.generate()  # sealed: the demo follows the rounds as the spec's auditor
        if cfg.sealed:
            cfg = replace(cfg, auditors=(*cfg.auditors, "0x" + auditor.public.hex()))
        spec = demo_spec(cfg, schema, [a.address for a in accounts], len(companies))
        for window in ("commit_window", "reveal_window", "vote_window"):
            spec.data["chain"][window] = WINDOW
        (root / "spec.toml").write_text(spec.to_toml())
        deployment = deploy(chain, deployer, spec)
        deployment.save(root / "deployment.json")
        fed = FederationClient(chain, deployment.federation)
        nspec = NodeSpec.from_federation(spec)
        (root / "pw").write_text("devnet\n")
        say(
            f"dev-net: anvil {anvil.url}, {len(kubo)} Kubo nodes, {len(companies)} peer processes; "
            f"{cfg.model} with {cfg.rule}; {cfg.rounds} rounds"
        )
        procs = []
        for i, (c, a) in enumerate(zip(companies, accounts, strict=True)):
            lines = [",".join(header), *(",".join(rows[j]) for j in c.train_index)]
            (root / f"peer{i}.csv").write_text("\n".join(lines) + "\n")
            create_keystore(root / f"peer{i}.json", "devnet", "0x" + a.key.hex())
            PeerConfig(
                c.name,
                Path(f"peer{i}.csv"),
                Path(f"peer{i}.json"),
                Path("deployment.json"),
                Path("spec.toml"),
                *(links or (lambda _i, rpc, ipfs: (rpc, ipfs)))(i, anvil.url, kubo[i % len(kubo)].api),
                Path(f"state{i}"),
                Path("pw"),
                0.3,
            ).save(root / f"peer{i}.toml")
            proc = spawn_daemon(root / f"peer{i}.toml", cfg.rounds, root / f"peer{i}.log")
            stack.callback(kill_process, proc)
            procs.append(proc)
        reader = KuboStore(kubo[0].api)
        sealer = None
        if nspec.sealing is not None:
            sealer = Sealer(fed, auditor_address(auditor.public), auditor, nspec.sealing, origin=deployment.block)
        follow = (fed, reader, nspec, companies, test_all, cfg.rounds, procs, root, say)
        rounds, federated = _follow(*follow, sealer, deployment.block, status)
        for i, p in enumerate(procs):
            if p.wait(timeout=120) != 0:
                tail = (root / f"peer{i}.log").read_text()[-800:]
                raise NodeError(f"peer {companies[i].name} exited with {p.returncode}: {tail}")
        status("training the centralized yardstick (every company's rows pooled)")
        central = train_alone(nspec, concat([c.train for c in companies]), cfg.rounds)
        status("each company's own choice: local, global or a blend, on held-out folds")
        pairs = zip(companies, accounts, personal_folds(nspec, companies, cfg.rounds, cfg.seed), strict=True)
        said = spent_on_chain(fed, deployment.block)
        peer_rows = [
            {**compare(fed, a.address, c, nspec, federated, central, own), "epsilon": said.get(a.address)}
            for c, a, own in pairs
        ]
    doc = document(cfg, deployment, rounds, peer_rows, nspec, federated, central, test_all, devnet=True)
    summary(doc, say)
    return doc


def _follow(
    fed: FederationClient,
    reader: KuboStore,
    nspec: NodeSpec,
    companies: list[Any],
    test_all: Any,
    total: int,
    procs: list[subprocess.Popen[bytes]],
    root: Path,
    say: Callable[[str], None],
    sealer: Sealer | None = None,
    block: int = 0,
    progress: Callable[[str], None] = lambda _line: None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Print a row per round as the chain closes it; returns the rows and the last agreed model. Sealed, as an
    auditor: each round re-run from its updates (the model's key comes from the model)."""
    params = nspec.initial_model()
    rows: list[dict[str, Any]] = []
    say(ROUND_HEADER)
    started = time.monotonic()
    deadline = started + total * (3 * WINDOW + 60)
    while len(rows) < total:
        if time.monotonic() > deadline:
            raise NodeError(f"the dev-net did not finish {total} rounds in time (logs in {root})")
        r = len(rows) + 1
        info = fed.round(r)
        if not info.phase.closed:  # round r+1 opens on r's vote: wait for its end
            progress(
                f"round {r}/{total}: {info.phase.name.lower()}, {info.commits} committed, "
                f"{info.reveals} revealed, {info.votes} voted"
            )
            if all(p.poll() is not None for p in procs):
                raise NodeError(f"every peer exited before round {r} closed (logs in {root})")
            time.sleep(0.5)
            continue
        if info.phase == Phase.FINALIZED and sealer is not None:
            verdict = verify_round(fed, reader, nspec, r, block, sealer)
            if not verdict.ok:
                raise NodeError(f"round {r} does not verify for the auditor: {verdict.lines[-1]}")
            params = fetch_model(fed, reader, nspec, r, sealer)
        elif info.phase == Phase.FINALIZED:
            try:
                params = fetch_verified(reader, info.model_cid, info.model_hash, nspec.layout, nspec.max_update_bytes)
            except UpdateRejected as exc:
                raise NodeError(f"round {r}'s model on IPFS does not match its on-chain hash: {exc}") from exc
        rows.append(round_row(info, params, companies, nspec, test_all, time.monotonic() - started, say))
        started = time.monotonic()
    return rows, params
