"""`fedchain demo`: a whole federation on the embedded default (or a dev-net), in one command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.cli.common import at_least, positive_float, writable_file
from node.cli.progress import StatusLine
from node.core.rules import RULES
from node.core.scoring import SCORINGS
from node.datasets import DEFAULT_DATA
from node.errors import NodeError
from node.sim.attacks import FREE_RIDES, POISONS

__all__ = ["add_demo_command"]


def _outputs(args: argparse.Namespace) -> tuple[Callable[[str], None], StatusLine]:
    """Where the demo's tables go (stdout, unless --json or --quiet) and its progress (a status line
    on stderr when that is a terminal, unless --quiet), the status line cleared before each table line."""
    status = StatusLine(enabled=False if args.quiet else None)

    def say(line: str) -> None:
        if not (args.json or args.quiet):
            status.clear()
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    return say, status


def _run(
    args: argparse.Namespace, demo: Callable[..., dict[str, Any]], cfg: Any
) -> tuple[dict[str, Any], Callable[[str], None]]:
    """`demo(cfg)` with the tables and the status line of `_outputs`, the status line cleared however it
    ends; returns its document and where further lines go."""
    say, status = _outputs(args)
    try:
        return demo(cfg, out=say, progress=status), say
    finally:
        status.clear()


def _party(text: str) -> tuple[str, tuple[str, ...]]:
    """NAME=col1,col2,... as given to --party."""
    name, sep, columns = text.partition("=")
    cols = tuple(c.strip() for c in columns.split(",") if c.strip())
    if not sep or not name.strip() or not cols:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=col1,col2,...")
    return name.strip(), cols


def _silent(text: str) -> tuple[str, int]:
    """NAME:EPOCH as given to --silent."""
    name, sep, epoch = text.rpartition(":")
    if not sep or not name or not epoch.isdigit() or int(epoch) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:EPOCH (the first epoch it misses, from 1)")
    return name, int(epoch)


_HORIZONTAL_ONLY = ("split_by", "peers", "dirichlet", "poisoners", "free_riders", "liars")


def cmd_vertical(args: argparse.Namespace) -> int:
    from node.sim.vertical import BANK_PARTIES, VerticalConfig, run_vertical_demo

    used = [f"--{k.replace('_', '-')}" for k in _HORIZONTAL_ONLY if getattr(args, k)]
    if used:
        raise NodeError(f"{', '.join(used)}: horizontal options, not for --vertical")
    default = args.data is None
    if not default and (args.target is None or args.positive is None or len(args.party) < 2):
        raise NodeError("with --data, give --target COLUMN, --positive VALUE and --party NAME=cols at least twice")
    parties = tuple(args.party) if args.party else BANK_PARTIES
    names = {n for n, _ in parties}
    for name, _ in args.silent:
        if name not in names or name == parties[0][0]:
            raise NodeError(f"--silent {name}: not a feature party (the parties: {', '.join(sorted(names))})")
    cfg = VerticalConfig(
        data=args.data or DEFAULT_DATA,
        target=args.target or "y",
        positive=args.positive or "yes",
        parties=parties,
        id_column=args.id,
        overlap=args.overlap,
        rounds=args.rounds,
        model=args.model,
        seed=args.seed,
        silent=dict(args.silent),
    )
    if args.devnet:
        from node.sim.vertical_devnet import run_vertical_devnet

        doc = _run(args, run_vertical_devnet, cfg)[0]
    else:
        doc = _run(args, run_vertical_demo, cfg)[0]
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from node.sim.companies import DemoConfig

    if args.plot is not None:  # before the demo runs, not after
        writable_file(args.plot, "--plot")
        if args.plot.suffix.lower() != ".png":
            raise NodeError(f"--plot {args.plot}: the chart is a PNG, name it .png")
    if args.vertical:
        if args.plot is not None:
            raise NodeError("--plot draws the horizontal demo's gains charts: not with --vertical")
        return cmd_vertical(args)
    used = [f"--{k}" for k in ("party", "id", "silent") if getattr(args, k)]
    if used or (args.overlap is not None and args.overlap != 0.8):
        raise NodeError(f"{', '.join(used) or '--overlap'}: vertical options, give --vertical too")
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
        scoring=args.scoring or ("agreement" if args.epsilon is not None else "evaluation"),
        liars=args.liars,
        epsilon=args.epsilon,
        clip=args.clip,
        sealed=args.sealed,
    )
    if args.epsilon is None and args.clip != 1.0:
        raise NodeError("--clip bounds DP-SGD's gradients: give --epsilon too")
    if args.devnet and (args.poisoners or args.free_riders or args.liars):
        raise NodeError("--poisoners, --free-riders and --liars run on the embedded default only, not with --devnet")
    if cfg.split_by is None and cfg.peers is None:
        raise NodeError("with --data, say how to split it: --split-by COLUMN or --peers N")
    if not default and (args.target is None or args.positive is None):
        raise NodeError("with --data, give --target COLUMN and --positive VALUE")

    if args.devnet:
        from node.sim.devnet import run_devnet_demo

        doc, say = _run(args, run_devnet_demo, cfg)
    else:
        from node.sim.demo import run_demo

        doc, say = _run(args, run_demo, cfg)
    if args.plot is not None:
        from node.sim.plots import gains_chart

        gains_chart(doc, args.plot)
        say(f"gains chart written to {args.plot}")
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


def add_demo_command(sub: Any) -> None:
    p = sub.add_parser("demo", help="a whole federation on the embedded chain and store, in one process")
    p.add_argument("--data", type=Path, help="CSV file (default: the bundled UCI Bank Marketing data)")
    p.add_argument("--target", help="label column (default for the bundled data: y)")
    p.add_argument("--positive", help="the label value that counts as positive, as the file shows it")
    p.add_argument("--split-by", help="column whose values make the companies (default for the bundled data: job)")
    p.add_argument("--peers", type=at_least(2), help="split into N companies at random (stratified) instead")
    p.add_argument(
        "--dirichlet",
        type=positive_float,
        metavar="ALPHA",
        help="with --peers: label skew, each class shared out by Dirichlet(ALPHA) proportions",
    )
    p.add_argument("--drop", nargs="*", default=[], help="columns to leave out (e.g. a leaking one)")
    p.add_argument("--rounds", type=at_least(1), default=10, help="federated rounds (default 10)")
    p.add_argument("--epochs", type=at_least(1), default=1, help="local epochs per round")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg", help="the model family (default logreg)")
    p.add_argument("--rule", choices=RULES, default="fedavg", help="the aggregation rule (default fedavg)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the initial model and training")
    p.add_argument("--poisoners", type=at_least(0), default=0, help="companies that poison their updates")
    p.add_argument("--poison", choices=POISONS, default="sign-flip", help="how the poisoners poison")
    p.add_argument("--free-riders", type=at_least(0), default=0, help="companies that submit without training")
    p.add_argument("--free-ride", choices=FREE_RIDES, default="zero", help="what the free riders submit")
    p.add_argument(
        "--scoring",
        choices=SCORINGS,
        help="how rewards are scored: peer evaluation of value on private rows (default), or peer agreement "
        "(the default with --epsilon)",
    )
    p.add_argument(
        "--epsilon",
        type=positive_float,
        help="train with differential privacy (DP-SGD): each company's budget over the run ([privacy] epsilon)",
    )
    p.add_argument(
        "--clip", type=positive_float, default=1.0, help="with --epsilon: each customer's gradient norm bound"
    )
    p.add_argument(
        "--sealed",
        action="store_true",
        help="seal updates and models to the members ([sealing]): an outsider reading IPFS learns sizes only",
    )
    p.add_argument("--liars", type=at_least(0), default=0, help="companies that collude in their evaluations")
    p.add_argument("--devnet", action="store_true", help="anvil + Kubo nodes, one peer process each")
    v = p.add_argument_group("cross-domain (vertical) federation")
    v.add_argument(
        "--vertical",
        action="store_true",
        help="parties hold different columns of the same customers (default data: a campaign owner, "
        "a demographics party and a finance party)",
    )
    v.add_argument(
        "--party",
        type=_party,
        action="append",
        default=[],
        metavar="NAME=COLS",
        help="a party and its columns (comma separated); the first is the task owner, which holds the labels",
    )
    v.add_argument("--id", help="the column that identifies a customer (default: a random id per row)")
    v.add_argument(
        "--overlap",
        type=positive_float,
        default=0.8,
        help="the share of the customers each party holds, at random (default 0.8)",
    )
    v.add_argument(
        "--silent",
        type=_silent,
        action="append",
        default=[],
        metavar="NAME:EPOCH",
        help="a feature party that stops answering from that epoch (it is timed out and slashed)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print nothing but errors (no tables, no progress line; --json still prints)",
    )
    p.add_argument(
        "--plot", type=Path, help="write each company's cumulative gains chart (local against used) to this PNG"
    )
    p.set_defaults(func=cmd_demo)
