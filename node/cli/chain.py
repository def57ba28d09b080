"""Chain commands: doctor, account, devnet, deploy, join, rewards, claim.

Each command imports what it needs when it runs, so building the parser (and
`fedchain --help`) loads neither web3 nor torch.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from ledger.files import write_atomic
from node.cli.common import (
    deployment_args,
    keystore_args,
    open_deployment,
    rounds_text,
    rpc_for,
    say,
    state_dir,
    state_dir_arg,
    tokens,
    why_unpaid,
)
from node.errors import NodeError

__all__ = ["add_chain_commands"]

_PY_PACKAGES = ("web3", "eth-tester", "py-evm", "py-solc-x", "numpy", "torch", "ipfshttpclient", "pyarrow")


# -- doctor -------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from ledger.toolchain import tools

    missing: list[str] = []
    for name in _PY_PACKAGES:
        try:
            say(f"{'ok':8} {name:16} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            say(f"{'MISSING':8} {name:16} -")
            missing.append(f"python package {name} (run `make setup`)")
    for tool in tools():
        status = "ok" if tool.ok else "MISSING"
        say(f"{status:8} {tool.name:16} {tool.version or '-':24} {tool.path or ''}")
        if not tool.ok:
            missing.append(f"{tool.name}: {tool.fix}")
    if missing:
        say(f"missing: {'; '.join(missing)}")
        return 1
    say("everything fedchain needs is installed")
    return 0


def cmd_account_new(args: argparse.Namespace) -> int:
    from ledger.chain import ANVIL_DEV_KEYS
    from ledger.keystore import create_keystore, read_password

    key = None
    if args.dev_key is not None:
        if not 0 <= args.dev_key < len(ANVIL_DEV_KEYS):
            raise NodeError(f"--dev-key must be 0 to {len(ANVIL_DEV_KEYS) - 1}")
        key = ANVIL_DEV_KEYS[args.dev_key]
    password = read_password(args.password_file, prompt="New keystore password: ")
    address = create_keystore(args.keystore, password, key)
    say(f"{address}  {args.keystore}")
    return 0


# -- devnet -------------------------------------------------------------------


def cmd_devnet_up(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ledger.chain import connect
    from ledger.devnet import DevnetState, pid_alive, start_anvil
    from node.store.kubo import KuboNode, ensure_nodes, new_swarm_key

    root = state_dir(args)
    state = DevnetState.load(root)
    chain_file = root / "chain.json"
    if state.anvil and pid_alive(state.anvil.pid):
        say(f"anvil already running: {state.anvil.url} (pid {state.anvil.pid})")
    else:
        if args.fresh and chain_file.exists():
            chain_file.unlink()
        saved = chain_file.exists()
        state.anvil = start_anvil(
            args.port, args.chain_id, root / "anvil.log", block_time=args.block_time, state_file=chain_file
        )
        state.save(root)
        block = connect(state.anvil.url, state.anvil.chain_id).block_number()
        if saved:
            say(f"chain   restored from {chain_file} at block {block}: its contracts and logs are back")
        else:
            say(f"chain   new and empty (saved to {chain_file} as it runs; `devnet up` restores it)")
    say(f"anvil   {state.anvil.url}  chain id {state.anvil.chain_id}  pid {state.anvil.pid}")
    key_path = root / "swarm.key"
    if not key_path.exists():
        write_atomic(key_path, new_swarm_key(), mode=0o600)

    def started(node: KuboNode) -> None:  # recorded at once: no daemon of ours is ever left unrecorded
        state.kubo = [k for k in state.kubo if k["repo"] != node.repo] + [asdict(node)]
        state.save(root)

    nodes = ensure_nodes(root, state.kubo, args.kubo, key_path.read_text(), started)
    state.kubo = [asdict(n) for n in nodes]
    state.save(root)
    for n in nodes:
        say(f"kubo    {n.api}  peer {n.peer_id[:16]}…  pid {n.pid}")
    say(f"state   {DevnetState.path(root)}")
    return 0


def cmd_devnet_down(args: argparse.Namespace) -> int:
    from ledger.devnet import DevnetState
    from node.store.kubo import KuboNode

    root = state_dir(args)
    state = DevnetState.load(root)
    if state.anvil is None and not state.kubo:
        say("devnet is not running")
        return 0
    for k in state.kubo:
        KuboNode(**k).stop()
        say(f"stopped kubo (pid {k['pid']})")
    if state.anvil is not None:
        state.anvil.stop()
        say(f"stopped anvil (pid {state.anvil.pid})")
    state.anvil, state.kubo = None, []
    state.save(root)
    return 0


def cmd_devnet_status(args: argparse.Namespace) -> int:
    from ledger.chain import connect
    from ledger.devnet import DevnetState, pid_alive
    from ledger.errors import LedgerError
    from node.store import KuboStore
    from node.store.kubo import KuboNode

    root = state_dir(args)
    state = DevnetState.load(root)
    if state.anvil is None:
        say("devnet is not running")
        return 1
    alive = pid_alive(state.anvil.pid)
    try:
        block = connect(state.anvil.url, state.anvil.chain_id, timeout=2).block_number() if alive else None
    except LedgerError:
        block = None
    status = f"up, block {block}" if block is not None else ("running, not answering" if alive else "down")
    say(f"anvil   {state.anvil.url}  chain id {state.anvil.chain_id}  pid {state.anvil.pid}  {status}")
    healthy = block is not None
    for k in state.kubo:
        node = KuboNode(**k)
        try:
            version = KuboStore(node.api, timeout=2).version()
            say(f"kubo    {node.api}  pid {node.pid}  up, version {version}")
        except NodeError:
            say(f"kubo    {node.api}  pid {node.pid}  down")
            healthy = False
    return 0 if healthy else 1


# -- deploy, join, rewards, claim ---------------------------------------------


def cmd_deploy(args: argparse.Namespace) -> int:
    from ledger.chain import connect
    from ledger.deploy import deploy
    from ledger.keystore import load_keystore, read_password
    from ledger.spec import load_spec
    from node.horizontal.spec import NodeSpec, aggregation_settings, scoring_rule

    spec = load_spec(args.spec)
    # refuse a spec the peers could not run, or whose rule cannot withstand its attackers, before spending gas
    aggregation_settings(spec)
    scoring_rule(spec)
    if "data" in spec.data:
        NodeSpec.from_federation(spec)
    chain = connect(rpc_for(args), args.chain_id)
    deployer = load_keystore(args.keystore, read_password(args.password_file))
    deployment = deploy(chain, deployer, spec)
    deployment.save(args.out)
    say(f"federation  {deployment.federation}")
    say(f"token       {deployment.token}")
    say(f"chain id    {deployment.chain_id}, block {deployment.block}")
    say(f"spec hash   {deployment.spec_hash}")
    say(f"written     {args.out}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from ledger.keystore import load_keystore, read_password

    _, federation, _ = open_deployment(args)
    member = load_keystore(args.keystore, read_password(args.password_file))
    federation.join(member)
    info = federation.member(member.address)
    say(f"{member.address} joined as member {info.index} with stake {tokens(info.stake)}")
    return 0


def _member_address(args: argparse.Namespace) -> str:
    from eth_utils import is_address, to_checksum_address

    from ledger.keystore import keystore_address

    if args.address:
        if not is_address(args.address):
            raise NodeError(f"{args.address!r} is not an Ethereum address")
        return str(to_checksum_address(args.address))
    if args.keystore is None:
        raise NodeError("say whose rewards: --address ADDR or --keystore FILE")
    return keystore_address(args.keystore)


def cmd_rewards(args: argparse.Namespace) -> int:
    from ledger.audit import member_rewards

    _, federation, deployment = open_deployment(args)
    doc = member_rewards(federation, _member_address(args), deployment.block)
    if args.json:
        say(json.dumps(doc, indent=2))
        return 0
    state = "active" if doc["active"] else "not a member"
    say(f"member    {doc['member']} ({state}), stake {tokens(doc['stake'])}")
    say(f"earned    {tokens(doc['earned'])}  claimed {tokens(doc['claimed'])}  unclaimed {tokens(doc['unclaimed'])}")
    say(f"slashed   {tokens(doc['slashed'])}")
    if doc["rounds"]:
        say(f"{'round':>5} {'score':>6} {'reward':>10} {'slashed':>10}")
        for x in doc["rounds"]:
            say(f"{x['round']:>5} {x['score']:>6} {tokens(x['reward']):>10} {tokens(x['slashed']):>10}")
    if doc["unpaid_rounds"]:
        say(f"unpaid    rounds {rounds_text(doc['unpaid_rounds'])}: voted, scored 0; {why_unpaid()}")
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    from ledger.keystore import load_keystore, read_password

    _, federation, _ = open_deployment(args)
    member = load_keystore(args.keystore, read_password(args.password_file))
    owed = federation.rewards(member.address)["credited"]
    if owed == 0:
        raise NodeError(f"{member.address} has no unclaimed rewards")
    federation.claim(member)
    balance = federation.token.balance_of(member.address)
    say(f"claimed {tokens(owed)} tokens to {member.address}; its balance is {tokens(balance)}")
    return 0


# -- parser -------------------------------------------------------------------


def add_chain_commands(sub: Any) -> None:
    """Register the chain commands on the top-level subparsers `sub`."""
    p = sub.add_parser("doctor", help="check every tool fedchain needs")
    p.set_defaults(func=cmd_doctor)

    acct = sub.add_parser("account", help="manage keystores").add_subparsers(dest="account_cmd", required=True)
    p = acct.add_parser("new", help="create an encrypted keystore")
    p.add_argument("--keystore", type=Path, required=True, help="where to write the encrypted JSON keystore")
    p.add_argument("--password-file", type=Path, help="file holding its password (else $FEDCHAIN_PASSWORD)")
    p.add_argument("--dev-key", type=int, help="import anvil's well-known development key N (devnets only)")
    p.set_defaults(func=cmd_account_new)

    dev = sub.add_parser("devnet", help="a local chain in the background").add_subparsers(
        dest="devnet_cmd", required=True
    )
    for name, func in (("up", cmd_devnet_up), ("down", cmd_devnet_down), ("status", cmd_devnet_status)):
        p = dev.add_parser(name)
        state_dir_arg(p)
        if name == "up":
            p.add_argument("--port", type=int, default=8545, help="anvil's JSON-RPC port (default 8545)")
            p.add_argument("--chain-id", type=int, default=31337, help="anvil's chain id (default 31337)")
            p.add_argument(
                "--block-time", type=float, default=1, help="seconds between blocks (0: one per transaction)"
            )
            p.add_argument("--kubo", type=int, default=2, help="Kubo (IPFS) nodes to start in a private swarm")
            p.add_argument("--fresh", action="store_true", help="start an empty chain, discarding the saved one")
        p.set_defaults(func=func)

    p = sub.add_parser("deploy", help="deploy the token and the federation")
    p.add_argument("--rpc", help="JSON-RPC URL (default: the dev-net's)")
    state_dir_arg(p)
    p.add_argument("--chain-id", type=int, help="refuse to deploy unless the endpoint serves this chain id")
    p.add_argument("--spec", type=Path, required=True, help="federation spec (TOML)")
    p.add_argument("--out", type=Path, default=Path("deployment.json"), help="the deployment file to write")
    keystore_args(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("join", help="stake and join a federation (founders, or members admitted by vote)")
    deployment_args(p)
    keystore_args(p)
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("rewards", help="a member's earned, claimed, unclaimed and slashed amounts, round by round")
    deployment_args(p)
    p.add_argument("--address", help="the member's address")
    p.add_argument("--keystore", type=Path, help="or the member's keystore (no password needed)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_rewards)

    p = sub.add_parser("claim", help="withdraw a member's unclaimed rewards")
    deployment_args(p)
    keystore_args(p)
    p.set_defaults(func=cmd_claim)
