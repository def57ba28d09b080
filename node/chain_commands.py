"""CLI commands that only need the ledger: doctor, account, devnet, deploy, join, audit."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

from ledger import (
    Chain,
    Deployment,
    FederationClient,
    LedgerError,
    connect,
    create_keystore,
    deploy,
    keystore_address,
    load_keystore,
    load_spec,
    open_federation,
    read_audit,
    read_password,
)
from ledger.audit import RoundRecord
from ledger.chain import ANVIL_DEV_KEYS
from ledger.devnet import DEFAULT_STATE_DIR, DevnetState, pid_alive, start_anvil
from ledger.spec import TOKEN_UNIT
from ledger.toolchain import tools

from .errors import NodeError
from .kubo import KuboNode, new_swarm_key, start_kubo
from .nodespec import NodeSpec, aggregation_settings
from .store import KuboStore

__all__ = ["add_chain_commands"]

_PY_PACKAGES = ("web3", "eth-tester", "py-evm", "py-solc-x", "numpy", "torch", "ipfshttpclient")


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# -- doctor -------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    missing: list[str] = []
    for name in _PY_PACKAGES:
        try:
            _say(f"{'ok':8} {name:16} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            _say(f"{'MISSING':8} {name:16} -")
            missing.append(f"python package {name} (run `make setup`)")
    for tool in tools():
        status = "ok" if tool.ok else "MISSING"
        _say(f"{status:8} {tool.name:16} {tool.version or '-':24} {tool.path or ''}")
        if not tool.ok:
            missing.append(f"{tool.name}: {tool.fix}")
    if missing:
        _say(f"missing: {'; '.join(missing)}")
        return 1
    _say("everything fedchain needs is installed")
    return 0


# -- accounts -----------------------------------------------------------------


def cmd_account_new(args: argparse.Namespace) -> int:
    key = None
    if args.dev_key is not None:
        if not 0 <= args.dev_key < len(ANVIL_DEV_KEYS):
            raise NodeError(f"--dev-key must be 0 to {len(ANVIL_DEV_KEYS) - 1}")
        key = ANVIL_DEV_KEYS[args.dev_key]
    password = read_password(args.password_file, prompt="New keystore password: ")
    address = create_keystore(args.keystore, password, key)
    _say(f"{address}  {args.keystore}")
    return 0


# -- devnet -------------------------------------------------------------------


def cmd_devnet_up(args: argparse.Namespace) -> int:
    state = DevnetState.load(args.state_dir)
    if state.anvil and pid_alive(state.anvil.pid):
        _say(f"anvil already running: {state.anvil.url} (pid {state.anvil.pid})")
    else:
        state.anvil = start_anvil(args.port, args.chain_id, args.state_dir / "anvil.log", block_time=args.block_time)
        state.save(args.state_dir)
    _say(f"anvil   {state.anvil.url}  chain id {state.anvil.chain_id}  pid {state.anvil.pid}")
    alive = [k for k in state.kubo if pid_alive(int(k["pid"]))]
    key_path = args.state_dir / "swarm.key"
    if not key_path.exists():
        key_path.write_text(new_swarm_key())
    nodes = [KuboNode(**k) for k in alive]
    try:
        for i in range(len(nodes), args.kubo):
            node = start_kubo(args.state_dir / f"kubo-{i}", key_path.read_text())
            for other in nodes:
                node.connect(other)
            nodes.append(node)
    finally:
        state.kubo = [asdict(n) for n in nodes]
        state.save(args.state_dir)
    for n in nodes:
        _say(f"kubo    {n.api}  peer {n.peer_id[:16]}…  pid {n.pid}")
    _say(f"state   {DevnetState.path(args.state_dir)}")
    return 0


def cmd_devnet_down(args: argparse.Namespace) -> int:
    state = DevnetState.load(args.state_dir)
    if state.anvil is None and not state.kubo:
        _say("devnet is not running")
        return 0
    for k in state.kubo:
        KuboNode(**k).stop()
        _say(f"stopped kubo (pid {k['pid']})")
    if state.anvil is not None:
        state.anvil.stop()
        _say(f"stopped anvil (pid {state.anvil.pid})")
    state.anvil, state.kubo = None, []
    state.save(args.state_dir)
    return 0


def cmd_devnet_status(args: argparse.Namespace) -> int:
    state = DevnetState.load(args.state_dir)
    if state.anvil is None:
        _say("devnet is not running")
        return 1
    alive = pid_alive(state.anvil.pid)
    try:
        block = connect(state.anvil.url, state.anvil.chain_id, timeout=2).w3.eth.block_number if alive else None
    except LedgerError:
        block = None
    status = f"up, block {block}" if block is not None else ("running, not answering" if alive else "down")
    _say(f"anvil   {state.anvil.url}  chain id {state.anvil.chain_id}  pid {state.anvil.pid}  {status}")
    healthy = block is not None
    for k in state.kubo:
        node = KuboNode(**k)
        try:
            version = KuboStore(node.api, timeout=2).version()
            _say(f"kubo    {node.api}  pid {node.pid}  up, version {version}")
        except NodeError:
            _say(f"kubo    {node.api}  pid {node.pid}  down")
            healthy = False
    return 0 if healthy else 1


# -- deploy and join ----------------------------------------------------------


def _rpc_for(args: argparse.Namespace, deployment: Deployment | None = None) -> str:
    if getattr(args, "rpc", None):
        return str(args.rpc)
    if deployment is not None and deployment.rpc_url:
        return deployment.rpc_url
    state = DevnetState.load(DEFAULT_STATE_DIR)
    if state.anvil is not None:
        return state.anvil.url
    raise NodeError("no RPC endpoint: give --rpc URL (or start one with `fedchain devnet up`)")


def cmd_deploy(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    # refuse a spec the peers could not run, or whose rule cannot withstand its attackers, before spending gas
    aggregation_settings(spec)
    if "data" in spec.data:
        NodeSpec.from_federation(spec)
    chain = connect(_rpc_for(args), args.chain_id)
    deployer = load_keystore(args.keystore, read_password(args.password_file))
    deployment = deploy(chain, deployer, spec)
    deployment.save(args.out)
    _say(f"federation  {deployment.federation}")
    _say(f"token       {deployment.token}")
    _say(f"chain id    {deployment.chain_id}, block {deployment.block}")
    _say(f"spec hash   {deployment.spec_hash}")
    _say(f"written     {args.out}")
    return 0


def _open(args: argparse.Namespace) -> tuple[Chain, FederationClient, Deployment]:
    deployment = Deployment.load(args.deployment)
    chain = connect(_rpc_for(args, deployment))
    return chain, open_federation(chain, deployment), deployment


def cmd_join(args: argparse.Namespace) -> int:
    _, federation, _ = _open(args)
    member = load_keystore(args.keystore, read_password(args.password_file))
    federation.join(member)
    info = federation.member(member.address)
    _say(f"{member.address} joined as member {info.index} with stake {info.stake / TOKEN_UNIT:g}")
    return 0


# -- rewards ------------------------------------------------------------------


def _member_address(args: argparse.Namespace) -> str:
    if args.address:
        if not is_address(args.address):
            raise NodeError(f"{args.address!r} is not an Ethereum address")
        return str(to_checksum_address(args.address))
    if args.keystore is None:
        raise NodeError("say whose rewards: --address ADDR or --keystore FILE")
    return keystore_address(args.keystore)


def cmd_rewards(args: argparse.Namespace) -> int:
    _, federation, deployment = _open(args)
    who = _member_address(args)
    totals, info = federation.rewards(who), federation.member(who)
    trail = read_audit(federation, deployment.block)
    rows = []
    for r in sorted(trail.rounds):
        rec = trail.rounds[r]
        reward = next((x for x in rec.rewards if x["member"] == who), None)
        slash = next((x for x in rec.slashes if x["member"] == who), None)
        if reward or slash:
            rows.append(
                {
                    "round": r,
                    "score": reward["score"] if reward else 0,
                    "reward": reward["amount"] if reward else "0",
                    "slashed": slash["amount"] if slash else "0",
                }
            )
    earned = totals["credited"] + totals["claimed"]
    logged = sum(int(x["reward"]) for x in rows)
    doc = {
        "member": who,
        "active": info.active,
        "stake": str(info.stake),
        "earned": str(earned),
        "claimed": str(totals["claimed"]),
        "unclaimed": str(totals["credited"]),
        "slashed": str(totals["slashed"]),
        "rounds": rows,
    }
    if logged != earned:
        raise NodeError(f"the contract says {who} earned {earned}, its RewardCredited events add up to {logged}")
    if args.json:
        _say(json.dumps(doc, indent=2))
        return 0
    _say(f"member    {who} ({'active' if info.active else 'not a member'}), stake {_tokens(info.stake)}")
    _say(f"earned    {_tokens(earned)}  claimed {_tokens(totals['claimed'])}  unclaimed {_tokens(totals['credited'])}")
    _say(f"slashed   {_tokens(totals['slashed'])}")
    if rows:
        _say(f"{'round':>5} {'score':>6} {'reward':>10} {'slashed':>10}")
        for x in rows:
            _say(f"{x['round']:>5} {x['score']:>6} {_tokens(x['reward']):>10} {_tokens(x['slashed']):>10}")
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    _, federation, _ = _open(args)
    member = load_keystore(args.keystore, read_password(args.password_file))
    owed = federation.rewards(member.address)["credited"]
    if owed == 0:
        raise NodeError(f"{member.address} has no unclaimed rewards")
    federation.claim(member)
    balance = federation.token.balance_of(member.address)
    _say(f"claimed {_tokens(owed)} tokens to {member.address}; its balance is {_tokens(balance)}")
    return 0


# -- audit --------------------------------------------------------------------


def _tokens(amount: str | int) -> str:
    return f"{int(amount) / TOKEN_UNIT:.4f}"


def _short(value: str | None, n: int = 10) -> str:
    return "-" if not value else (value if len(value) <= n + 2 else value[: n + 2] + "…")


def _round_line(r: dict[str, Any]) -> str:
    status = r["status"] if r["status"] != "open" else f"open:{r['phase'].lower()}"
    if r["fail_reason"]:
        status += f" ({r['fail_reason']})"
    return (
        f"{r['round']:>5}  {status:28} {len(r['commits']):>7} {len(r['reveals']):>7} {len(r['votes']):>5}  "
        f"{_short(r['model_hash']):13} {_short(r['model_cid'], 16):19} {_tokens(r['reward_total']):>10} "
        f"{_tokens(r['slashed_total']):>10}  {r['opened'].get('block', '-'):>6} "
        f"{(r['closed'] or {}).get('block', '-'):>6}"
    )


def cmd_audit_rounds(args: argparse.Namespace) -> int:
    _, federation, deployment = _open(args)
    trail = read_audit(federation, deployment.block).to_json()
    if args.json:
        _say(json.dumps(trail, indent=2))
        return 0
    _say(f"federation {trail['federation']} on chain {trail['chain_id']}, {len(trail['members'])} members")
    _say(
        f"{'round':>5}  {'status':28} {'commits':>7} {'reveals':>7} {'votes':>5}  {'model':13} {'cid':19} "
        f"{'rewards':>10} {'slashed':>10}  {'opened':>6} {'closed':>6}"
    )
    for r in trail["rounds"]:
        _say(_round_line(r))
    return 0


def _member_rows(rec: dict[str, Any], members: list[str]) -> list[str]:
    by = {k: {x["member"]: x for x in rec[k]} for k in ("commits", "reveals", "votes", "rewards", "slashes")}
    winner = next((p for p in rec["proposals"] if p["proposal"] == rec["winner"]), None)
    rows = []
    for m in members[: rec["member_count"]]:
        reveal, vote = by["reveals"].get(m), by["votes"].get(m)
        score = winner["scores"].get(m, 0) if winner else "-"
        rows.append(
            f"{m}  {'yes' if m in by['commits'] else 'no':9} {_short(reveal['content_hash']) if reveal else 'no':13} "
            f"{_short(vote['proposal']) if vote else 'no':13} {score!s:>8} "
            f"{_tokens(by['rewards'][m]['amount']) if m in by['rewards'] else '-':>10} "
            f"{_tokens(by['slashes'][m]['amount']) if m in by['slashes'] else '-':>10}"
        )
    return rows


def cmd_audit_round(args: argparse.Namespace) -> int:
    _, federation, deployment = _open(args)
    trail = read_audit(federation, deployment.block)
    rec: RoundRecord | None = trail.rounds.get(args.round)
    if rec is None:
        raise NodeError(f"round {args.round} has not opened (rounds so far: {len(trail.rounds)})")
    doc = rec.to_json()
    if args.json:
        _say(json.dumps(doc, indent=2))
        return 0
    _say(
        f"round {doc['round']}: {doc['status']} (phase {doc['phase']})"
        + (f", {doc['fail_reason']}" if doc["fail_reason"] else "")
    )
    _say(f"model {doc['model_hash'] or '-'}  cid {doc['model_cid'] or '-'}")
    _say(f"rewards {_tokens(doc['reward_total'])}, slashed {_tokens(doc['slashed_total'])}")
    _say(f"{'member':42}  {'committed':9} {'revealed':13} {'voted':13} {'score':>8} {'reward':>10} {'slashed':>10}")
    for row in _member_rows(doc, trail.members):
        _say(row)
    return 0


# -- parser -------------------------------------------------------------------


def _keystore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keystore", type=Path, required=True, help="encrypted JSON keystore of the account")
    p.add_argument("--password-file", type=Path, help="file holding the keystore password (else $FEDCHAIN_PASSWORD)")


def _deployment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deployment", type=Path, default=Path("deployment.json"), help="deployment file")
    p.add_argument("--rpc", help="JSON-RPC URL (default: the deployment's, else the devnet's)")


def add_chain_commands(sub: Any) -> Any:
    """Register the ledger-only commands on the top-level subparsers `sub`; returns the `audit` subparsers."""
    p = sub.add_parser("doctor", help="check every tool fedchain needs")
    p.set_defaults(func=cmd_doctor)

    acct = sub.add_parser("account", help="manage keystores").add_subparsers(dest="account_cmd", required=True)
    p = acct.add_parser("new", help="create an encrypted keystore")
    p.add_argument("--keystore", type=Path, required=True)
    p.add_argument("--password-file", type=Path)
    p.add_argument("--dev-key", type=int, help="import anvil's well-known development key N (devnets only)")
    p.set_defaults(func=cmd_account_new)

    dev = sub.add_parser("devnet", help="a local chain in the background").add_subparsers(
        dest="devnet_cmd", required=True
    )
    for name, func in (("up", cmd_devnet_up), ("down", cmd_devnet_down), ("status", cmd_devnet_status)):
        p = dev.add_parser(name)
        p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
        if name == "up":
            p.add_argument("--port", type=int, default=8545)
            p.add_argument("--chain-id", type=int, default=31337)
            p.add_argument(
                "--block-time", type=float, default=1, help="seconds between blocks (0: one per transaction)"
            )
            p.add_argument("--kubo", type=int, default=2, help="Kubo (IPFS) nodes to start in a private swarm")
        p.set_defaults(func=func)

    p = sub.add_parser("deploy", help="deploy the token and the federation")
    p.add_argument("--rpc", help="JSON-RPC URL (default: the devnet's)")
    p.add_argument("--chain-id", type=int, help="refuse to deploy unless the endpoint serves this chain id")
    p.add_argument("--spec", type=Path, required=True, help="federation spec (TOML)")
    p.add_argument("--out", type=Path, default=Path("deployment.json"))
    _keystore_args(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("join", help="stake and join a federation (founders, or members admitted by vote)")
    _deployment_args(p)
    _keystore_args(p)
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("rewards", help="a member's earned, claimed, unclaimed and slashed amounts, round by round")
    _deployment_args(p)
    p.add_argument("--address", help="the member's address")
    p.add_argument("--keystore", type=Path, help="or the member's keystore (no password needed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rewards)

    p = sub.add_parser("claim", help="withdraw a member's unclaimed rewards")
    _deployment_args(p)
    _keystore_args(p)
    p.set_defaults(func=cmd_claim)

    audit = sub.add_parser("audit", help="the audit trail, from events").add_subparsers(dest="audit_cmd", required=True)
    p = audit.add_parser("rounds", help="every round")
    _deployment_args(p)
    p.add_argument("--json", action="store_true", help="print the fedchain.audit/1 JSON document")
    p.set_defaults(func=cmd_audit_rounds)
    p = audit.add_parser("round", help="one round, member by member")
    p.add_argument("round", type=int)
    _deployment_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_round)
    return audit
