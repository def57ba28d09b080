"""`fedchain vertical run`: a member of a cross-domain (vertical) task as a daemon."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from node.cli.common import LOCAL_RPC, at_least, positive_float

__all__ = ["add_vertical_commands"]


def cmd_vertical_run(args: argparse.Namespace) -> int:
    from node.vertical.daemon import MemberConfig, run_member

    cfg = MemberConfig(
        spec=args.spec,
        task=args.task,
        name=args.name,
        data=args.data,
        keystore=args.keystore,
        rpc=args.rpc,
        ipfs=args.ipfs,
        password_file=args.password_file,
        seal_key=args.seal_key,
        from_block=args.from_block,
        poll_seconds=args.poll,
        sample_seed=args.sample_seed,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        sys.stdout.write(f"{signal.Signals(signum).name}: stopping after this step\n")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def log(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return run_member(cfg, log, stop, result=args.result)


def add_vertical_commands(sub: Any) -> None:
    group = sub.add_parser("vertical", help="cross-domain federation: parties with different columns")
    vsub = group.add_subparsers(dest="vertical_cmd", required=True)
    p = vsub.add_parser("run", help="run one member of a vertical task until the task is over")
    p.add_argument("--spec", type=Path, required=True, help="the task spec (JSON; its hash must match the task's)")
    p.add_argument("--task", required=True, help="the VerticalTask contract's address")
    p.add_argument("--name", required=True, help="this member's name in the task spec")
    p.add_argument("--data", type=Path, required=True, help="this member's CSV: the id column and its columns")
    p.add_argument("--keystore", type=Path, required=True, help="encrypted JSON keystore of the member's account")
    p.add_argument("--password-file", type=Path, help="file holding the keystore password (else $FEDCHAIN_PASSWORD)")
    p.add_argument(
        "--seal-key",
        type=Path,
        help="the member's X25519 key for sealed messages, encrypted with the same password "
        "(default: the keystore's path with .seal.pem; created on first run)",
    )
    p.add_argument("--rpc", default=LOCAL_RPC, help=f"JSON-RPC URL (default {LOCAL_RPC})")
    p.add_argument("--ipfs", required=True, help="Kubo API multiaddr, or embedded:DIR")
    p.add_argument("--from-block", type=at_least(0), default=0, help="the block the task was deployed in")
    p.add_argument(
        "--poll", type=positive_float, default=1.0, help="the longest wait in seconds between looks at the chain"
    )
    p.add_argument(
        "--sample-seed",
        type=int,
        help="(owner, demos and tests only) derive the sample ids from this seed instead of at random, "
        "so two runs train on the same batches",
    )
    p.add_argument("--result", type=Path, help="write what this member measured (JSON) here at the end")
    p.set_defaults(func=cmd_vertical_run)
