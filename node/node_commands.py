"""CLI commands of the peer node: the demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ledger.chain import connect
from ledger.deploy import Deployment, open_federation
from ledger.spec import load_spec, spec_from_dict

from .attacks import FREE_RIDES, POISONS
from .config import PeerConfig
from .daemon import Daemon
from .data import infer_schema
from .demo import DEFAULT_DATA, DemoConfig, run_demo
from .demo_devnet import run_devnet_demo
from .errors import NodeError
from .nodespec import RULES, NodeSpec
from .store import open_store
from .verify import verify_round

__all__ = ["add_node_commands", "add_peer_commands", "add_spec_commands", "add_verify_command"]


def cmd_demo(args: argparse.Namespace) -> int:
    if args.peers is not None and args.peers < 2:
        raise NodeError("--peers must be at least 2")
    default = args.data is None
    cfg = DemoConfig(
        data=args.data or DEFAULT_DATA,
        target=args.target or "y",
        positive=args.positive or "yes",
        split_by=None if args.peers is not None else (args.split_by or ("job" if default else None)),
        peers=args.peers,
        dirichlet=args.dirichlet,
        drop=["duration"] if default else list(args.drop),
        rounds=args.rounds,
        model=args.model,
        rule=args.rule,
        epochs=args.epochs,
        seed=args.seed,
        poisoners=args.poisoners,
        poison=args.poison,
        free_riders=args.free_riders,
        free_ride=args.free_ride,
    )
    if args.devnet and (args.poisoners or args.free_riders):
        raise NodeError("--poisoners and --free-riders run on the embedded default only, not with --devnet")
    if cfg.split_by is None and cfg.peers is None:
        raise NodeError("with --data, say how to split it: --split-by COLUMN or --peers N")
    if not default and (args.target is None or args.positive is None):
        raise NodeError("with --data, give --target COLUMN and --positive VALUE")

    def say(line: str) -> None:
        if not args.json:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    doc = run_devnet_demo(cfg, out=say) if args.devnet else run_demo(cfg, out=say)
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def add_node_commands(sub: Any) -> None:
    p = sub.add_parser("demo", help="a whole federation on the embedded chain and store, in one process")
    p.add_argument("--data", type=Path, help="CSV file (default: the bundled UCI Bank Marketing data)")
    p.add_argument("--target", help="label column (default for the bundled data: y)")
    p.add_argument("--positive", help="the label value that counts as positive, as the file shows it")
    p.add_argument("--split-by", help="column whose values make the companies (default for the bundled data: job)")
    p.add_argument("--peers", type=int, help="split into N companies at random (stratified) instead")
    p.add_argument(
        "--dirichlet",
        type=float,
        metavar="ALPHA",
        help="with --peers: label skew, each class shared out by Dirichlet(ALPHA) proportions",
    )
    p.add_argument("--drop", nargs="*", default=[], help="columns to leave out (e.g. a leaking one)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=1, help="local epochs per round")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg")
    p.add_argument("--rule", choices=RULES, default="fedavg")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--poisoners", type=int, default=0, help="companies that poison their updates")
    p.add_argument("--poison", choices=POISONS, default="sign-flip", help="how the poisoners poison")
    p.add_argument("--free-riders", type=int, default=0, help="companies that submit without training")
    p.add_argument("--free-ride", choices=FREE_RIDES, default="zero", help="what the free riders submit")
    p.add_argument("--devnet", action="store_true", help="anvil + Kubo nodes, one peer process each")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    p.set_defaults(func=cmd_demo)
    add_peer_commands(sub)
    add_spec_commands(sub)


def cmd_node_init(args: argparse.Namespace) -> int:
    out: Path = args.out
    base = out.parent.resolve()

    def rel(p: Path) -> Path:
        p = p.resolve()
        return p.relative_to(base) if p.is_relative_to(base) else p

    for label, path in (("--data", args.data), ("--keystore", args.keystore), ("--spec", args.spec)):
        if not path.is_file():
            raise NodeError(f"{label} {path}: no such file")
    cfg = PeerConfig(
        name=args.name,
        data=rel(args.data),
        keystore=rel(args.keystore),
        deployment=rel(args.deployment),
        spec=rel(args.spec),
        rpc=args.rpc,
        ipfs=args.ipfs,
        state=rel(args.state or out.parent / f".fedchain-{args.name}"),
        password_file=rel(args.password_file) if args.password_file else None,
        poll_seconds=args.poll,
    )
    cfg.save(out)
    sys.stdout.write(f"wrote {out}; start the peer with: fedchain node run --config {out}\n")
    return 0


def cmd_node_run(args: argparse.Namespace) -> int:
    cfg = PeerConfig.load(args.config)

    def log(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return Daemon(cfg, log).run(until_round=args.until_round)


def add_peer_commands(sub: Any) -> None:
    node = sub.add_parser("node", help="run a peer").add_subparsers(dest="node_cmd", required=True)
    p = node.add_parser("init", help="write a peer config")
    p.add_argument("--out", type=Path, default=Path("peer.toml"))
    p.add_argument("--name", required=True, help="this peer's name in logs")
    p.add_argument("--data", type=Path, required=True, help="this company's CSV")
    p.add_argument("--keystore", type=Path, required=True)
    p.add_argument("--password-file", type=Path)
    p.add_argument("--deployment", type=Path, default=Path("deployment.json"))
    p.add_argument("--spec", type=Path, required=True, help="the federation spec (its hash must match the chain's)")
    p.add_argument("--rpc", default="http://127.0.0.1:8545")
    p.add_argument("--ipfs", default="/ip4/127.0.0.1/tcp/5001/http", help="Kubo API multiaddr, or embedded:DIR")
    p.add_argument("--state", type=Path, help="state directory (default: .fedchain-NAME beside the config)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at the chain when idle")
    p.set_defaults(func=cmd_node_init)
    p = node.add_parser("run", help="run the peer daemon until SIGINT/SIGTERM")
    p.add_argument("--config", type=Path, default=Path("peer.toml"))
    p.add_argument("--until-round", type=int, help="exit once this round has closed")
    p.set_defaults(func=cmd_node_run)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    deployment = Deployment.load(args.deployment)
    spec = load_spec(args.spec)
    chain = connect(args.rpc or deployment.rpc_url or "http://127.0.0.1:8545", deployment.chain_id)
    fed = open_federation(chain, deployment)
    if fed.spec_hash() != spec.hash:
        raise NodeError(f"{args.spec} is not this federation's spec (hash 0x{spec.hash.hex()})")
    store = open_store(args.ipfs)
    verdict = verify_round(fed, store, NodeSpec.from_federation(spec), args.round, deployment.block)
    for line in verdict.lines:
        sys.stdout.write(line + "\n")
    if not verdict.ok:
        first = next(line for line in verdict.lines if line.startswith("MISMATCH"))
        sys.stderr.write(f"fedchain: round {args.round} does not verify: {first.removeprefix('MISMATCH: ')}\n")
        return 1
    sys.stdout.write(f"round {args.round} verifies\n")
    return 0


def add_verify_command(audit: Any) -> None:
    p = audit.add_parser("verify", help="refetch a finalized round's updates, re-aggregate, compare with the chain")
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--deployment", type=Path, default=Path("deployment.json"))
    p.add_argument("--spec", type=Path, required=True, help="the federation spec")
    p.add_argument("--rpc", help="JSON-RPC URL (default: the deployment's)")
    p.add_argument("--ipfs", default="/ip4/127.0.0.1/tcp/5001/http", help="Kubo API multiaddr, or embedded:DIR")
    p.set_defaults(func=cmd_audit_verify)


def cmd_spec_init(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise NodeError(f"{args.out} exists; refusing to overwrite a spec")
    schema, warnings = infer_schema(args.data, args.target, args.positive, drop=args.drop)
    for w in warnings:
        sys.stderr.write(f"note: {w}\n")
    spec = spec_from_dict(
        {
            "chain": {"min_peers": min(2, len(args.founders))},
            "members": {"founders": list(args.founders)},
            "data": schema.to_spec(),
            "model": {"kind": args.model, "hidden": 32, "seed": 0},
            "training": {"epochs": 1, "batch_size": 64, "lr": 0.01, "optimizer": "adam", "seed": 0},
            "aggregation": {"rule": args.rule, "trim": 0.2, "attackers": 0},
        }
    )
    NodeSpec.from_federation(spec)  # the peers must be able to read it
    args.out.write_text(
        "# A fedchain federation spec. Its numeric centers and scales were measured on "
        f"{args.data.name}:\n# round them, or agree on them, before sharing it.\n" + spec.to_toml()
    )
    sys.stdout.write(f"wrote {args.out} (spec hash 0x{spec.hash.hex()}, {schema.n_features} features)\n")
    return 0


def add_spec_commands(sub: Any) -> None:
    spec = sub.add_parser("spec", help="federation specs").add_subparsers(dest="spec_cmd", required=True)
    p = spec.add_parser("init", help="draft a spec from a sample CSV")
    p.add_argument("--data", type=Path, required=True, help="a CSV with the federation's columns")
    p.add_argument("--target", required=True)
    p.add_argument("--positive", required=True)
    p.add_argument("--drop", nargs="*", default=[], help="columns to leave out (e.g. a leaking one)")
    p.add_argument("--founders", nargs="+", required=True, help="founder addresses")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg")
    p.add_argument("--rule", choices=RULES, default="fedavg")
    p.add_argument("--out", type=Path, default=Path("spec.toml"))
    p.set_defaults(func=cmd_spec_init)
