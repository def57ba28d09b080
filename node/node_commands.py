"""CLI commands of the peer node: the demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .demo import DEFAULT_DATA, DemoConfig, run_demo
from .errors import NodeError
from .nodespec import RULES

__all__ = ["add_node_commands"]


def cmd_demo(args: argparse.Namespace) -> int:
    if args.devnet:
        raise NodeError("--devnet is not built yet: the demo runs on the embedded chain and store only")
    if args.peers is not None and args.peers < 2:
        raise NodeError("--peers must be at least 2")
    default = args.data is None
    cfg = DemoConfig(
        data=args.data or DEFAULT_DATA,
        target=args.target or "y",
        positive=args.positive or "yes",
        split_by=None if args.peers is not None else (args.split_by or ("job" if default else None)),
        peers=args.peers,
        drop=["duration"] if default else list(args.drop),
        rounds=args.rounds,
        model=args.model,
        rule=args.rule,
        epochs=args.epochs,
        seed=args.seed,
    )
    if cfg.split_by is None and cfg.peers is None:
        raise NodeError("with --data, say how to split it: --split-by COLUMN or --peers N")
    if not default and (args.target is None or args.positive is None):
        raise NodeError("with --data, give --target COLUMN and --positive VALUE")

    def say(line: str) -> None:
        if not args.json:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    doc = run_demo(cfg, out=say)
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
    p.add_argument("--drop", nargs="*", default=[], help="columns to leave out (e.g. a leaking one)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=1, help="local epochs per round")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg")
    p.add_argument("--rule", choices=RULES, default="fedavg")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--devnet", action="store_true", help="real anvil + Kubo nodes, one process per peer (not built yet)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    p.set_defaults(func=cmd_demo)
