"""Peer commands: `fedchain node init|run|personalize` and `fedchain spec init`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from node.cli.common import LOCAL_RPC, at_least, devnet_state, ipfs_for, port_number, positive_float, state_dir_arg
from node.core.rules import RULES
from node.core.scoring import SCORINGS
from node.errors import NodeError

__all__ = ["add_peer_commands", "add_spec_commands"]


def _init_rpc(args: argparse.Namespace) -> str:
    """--rpc, else the deployment's endpoint (if the file is there yet), else the dev-net's, else anvil's default."""
    from ledger.deploy import Deployment

    if args.rpc:
        return str(args.rpc)
    if args.deployment.is_file() and (url := Deployment.load(args.deployment).rpc_url):
        return url
    anvil = devnet_state(args).anvil
    return anvil.url if anvil is not None else LOCAL_RPC


def cmd_node_init(args: argparse.Namespace) -> int:
    from node.horizontal.config import PeerConfig

    out: Path = args.out
    if out.exists() and not args.force:
        raise NodeError(f"{out} exists; refusing to overwrite a peer config (--force to replace it)")
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
        rpc=_init_rpc(args),
        ipfs=ipfs_for(args),
        state=rel(args.state or out.parent / f".fedchain-{args.name}"),
        password_file=rel(args.password_file) if args.password_file else None,
        poll_seconds=args.poll,
    )
    cfg.save(out, overwrite=args.force)
    sys.stdout.write(f"wrote {out}; start the peer with: fedchain node run --config {out}\n")
    return 0


def cmd_node_run(args: argparse.Namespace) -> int:
    from node.horizontal.config import PeerConfig
    from node.horizontal.daemon import Daemon

    cfg = PeerConfig.load(args.config)

    def log(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    daemon = Daemon(
        cfg, log, log_format=args.log_format, metrics_port=args.metrics_port, metrics_host=args.metrics_host
    )
    return daemon.run(until_round=args.until_round)


def cmd_node_personalize(args: argparse.Namespace) -> int:
    from node.horizontal.config import PeerConfig
    from node.horizontal.personalize import personal_path, personalize

    cfg = PeerConfig.load(args.config)

    def log(line: str) -> None:
        sys.stdout.write(line + "\n")

    mine = personalize(cfg, log, args.local_rounds)
    best = next((c for c in mine.candidates if c.name == mine.choice), None)
    evidence = (
        f"cross-validated AUC {best.auc:.4f}, {best.gain:+.4f} over your local model (spread {best.spread:.4f})"
        if best is not None
        else mine.note
    )
    sys.stdout.write(f"uses {mine.choice}: {evidence}; saved {personal_path(cfg)}.npz and .json\n")
    return 0


def add_peer_commands(sub: Any) -> None:
    node = sub.add_parser("node", help="run a peer").add_subparsers(dest="node_cmd", required=True)
    p = node.add_parser("init", help="write a peer config")
    p.add_argument("--out", type=Path, default=Path("peer.toml"), help="the config file to write (default peer.toml)")
    p.add_argument("--name", required=True, help="this peer's name in logs")
    p.add_argument("--data", type=Path, required=True, help="this company's CSV")
    p.add_argument("--keystore", type=Path, required=True, help="the member's encrypted JSON keystore")
    p.add_argument("--password-file", type=Path, help="file holding its password (else $FEDCHAIN_PASSWORD)")
    p.add_argument("--deployment", type=Path, default=Path("deployment.json"), help="the deployment file")
    p.add_argument("--spec", type=Path, required=True, help="the federation spec (its hash must match the chain's)")
    p.add_argument("--rpc", help=f"JSON-RPC URL (default: the deployment's, else the dev-net's, else {LOCAL_RPC})")
    p.add_argument(
        "--ipfs", help="Kubo API multiaddr, or embedded:DIR (default: the dev-net's first Kubo node, else port 5001)"
    )
    state_dir_arg(p)
    p.add_argument("--state", type=Path, help="state directory (default: .fedchain-NAME beside the config)")
    p.add_argument(
        "--poll",
        type=positive_float,
        default=1.0,
        help="the longest wait in seconds between looks at the chain when idle (a new block sooner)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing config")
    p.set_defaults(func=cmd_node_init)
    p = node.add_parser("run", help="run the peer daemon until SIGINT/SIGTERM")
    p.add_argument("--config", type=Path, default=Path("peer.toml"), help="the peer config (default peer.toml)")
    p.add_argument("--until-round", type=at_least(1), help="exit once this round has closed")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: readable lines (default); json: one JSON object a line (time, peer, kind, round, details)",
    )
    p.add_argument("--metrics-port", type=port_number, help="serve Prometheus metrics on this port (/metrics)")
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address to serve metrics on (default: 127.0.0.1 only; the endpoint has no authentication)",
    )
    p.set_defaults(func=cmd_node_run)
    p = node.add_parser(
        "personalize",
        help="choose this company's own model from the federation's latest one (on its own rows) and save it",
    )
    p.add_argument("--config", type=Path, default=Path("peer.toml"), help="the peer config (default peer.toml)")
    p.add_argument(
        "--local-rounds",
        type=at_least(1),
        help="rounds of local training the local candidate gets (default: the latest finalized round's number, "
        "at most 100)",
    )
    p.set_defaults(func=cmd_node_personalize)


def cmd_spec_init(args: argparse.Namespace) -> int:
    from ledger.spec import spec_from_dict
    from node.horizontal.spec import NodeSpec
    from node.learn.data import infer_schema

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
            "scoring": {"rule": args.scoring or ("agreement" if args.epsilon is not None else "evaluation")},
            **({} if args.epsilon is None else {"privacy": {"epsilon": args.epsilon, "rounds": args.dp_rounds}}),
            **({"sealing": {"auditors": list(args.auditor)}} if args.sealed or args.auditor else {}),
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
    p.add_argument("--target", required=True, help="the label column")
    p.add_argument("--positive", required=True, help="the label value that counts as positive")
    p.add_argument("--drop", nargs="*", default=[], help="columns to leave out (e.g. a leaking one)")
    p.add_argument("--founders", nargs="+", required=True, help="founder addresses")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg", help="the model family (default logreg)")
    p.add_argument("--rule", choices=RULES, default="fedavg", help="the aggregation rule (default fedavg)")
    p.add_argument(
        "--scoring",
        choices=SCORINGS,
        help="how rewards are scored: peer evaluation of value (default), or peer agreement (the default, and "
        "the only choice, with --epsilon)",
    )
    p.add_argument(
        "--epsilon",
        type=positive_float,
        help="a [privacy] table: every member trains with DP-SGD and spends at most this epsilon (delta 1e-5)",
    )
    p.add_argument("--dp-rounds", type=at_least(1), default=10, help="with --epsilon: the rounds the budget must last")
    p.add_argument(
        "--sealed",
        action="store_true",
        help="a [sealing] table: updates and models sealed to the members (and auditors), not public on IPFS",
    )
    p.add_argument(
        "--auditor",
        action="append",
        default=[],
        help="an auditor's X25519 public key (0x + 64 hex, from `fedchain audit keygen`) that receives every "
        "update too; implies --sealed; repeatable",
    )
    p.add_argument("--out", type=Path, default=Path("spec.toml"), help="the spec file to write (default spec.toml)")
    p.set_defaults(func=cmd_spec_init)
