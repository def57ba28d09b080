"""`fedchain status`: the federation at a glance, once, as JSON, or refreshed in place (`--watch`)."""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

from node.cli.common import at_least, deployment_args, open_deployment, positive_float, say, short, tokens

__all__ = ["add_status_command", "render"]


def _clock(cur: dict[str, Any]) -> str:
    if cur["timed_out"]:
        return f"{cur['stored_phase']} window over: {cur['phase']} at the next transaction"
    if cur["seconds_left"] is None:
        return str(cur["phase"])
    if cur["seconds_left"] == 0:
        return f"{cur['phase']}, its window is over (it closes at the next transaction)"
    return f"{cur['phase']}, {cur['seconds_left']} s left"


def render(doc: dict[str, Any]) -> list[str]:
    """The status document as the lines `fedchain status` prints."""
    lines = [f"federation {doc['federation']} on chain {doc['chain_id']}, block {doc['head_block']}"]
    cur = doc["current"]
    if cur is None:
        lines.append("no round open yet: every founder must join")
    else:
        lines.append(
            f"round {cur['round']}: {_clock(cur)} (commits {cur['commits']}/{cur['eligible']}, "
            f"reveals {cur['reveals']}, votes {cur['votes']})"
        )
    lines += [
        "",
        f"{'member':42}  {'active':6} {'stake':>10} {'this round':>10} {'rounds':>6} {'earned':>10} {'unclaimed':>10}",
    ]
    for m in doc["members"]:
        lines.append(
            f"{m['address']:42}  {'yes' if m['active'] else 'no':6} {tokens(m['stake']):>10} "
            f"{m['this_round'] or '-':>10} {m['rounds_taken_part']:>6} {tokens(m['earned']):>10} "
            f"{tokens(m['unclaimed']):>10}"
        )
    lines.append("")
    models = doc["latest_models"]
    lines.append(f"finalized rounds: {doc['finalized_rounds']}" + ("; latest models:" if models else ""))
    lines += [f"  round {m['round']:>4}  {m['model_hash']}  {short(m['model_cid'], 24)}" for m in models]
    failed = doc["failed"]
    lines.append("failed rounds: " + (", ".join(f"{f['round']} ({f['reason']})" for f in failed) if failed else "none"))
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    from ledger.status import federation_status

    _chain, fed, deployment = open_deployment(args)
    if not args.watch:
        doc = federation_status(fed, deployment.block)
        if args.json:
            say(json.dumps(doc, indent=2))
        else:
            for line in render(doc):
                say(line)
        return 0
    if args.json:
        from node.errors import NodeError

        raise NodeError("--watch refreshes a screen: use --json without it (once), e.g. in a loop of your own")
    from contextlib import nullcontext

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    stop, console = threading.Event(), Console()
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    with live or nullcontext():
        try:
            while True:
                lines = render(federation_status(fed, deployment.block))
                if live is not None:
                    live.update(Text("\n".join(lines)), refresh=True)
                else:  # piped or logged: each refresh printed in full, one after another
                    for line in [*lines, ""]:
                        say(line)
                if args.count is not None:
                    args.count -= 1
                    if args.count == 0:
                        break
                stop.wait(args.interval)
        except KeyboardInterrupt:
            pass
    return 0


def add_status_command(sub: Any) -> None:
    p = sub.add_parser("status", help="the federation at a glance: the round and its clock, members, models")
    deployment_args(p)
    p.add_argument("--json", action="store_true", help="print the fedchain.status/1 JSON document")
    p.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    p.add_argument("--interval", type=positive_float, default=2.0, help="seconds between refreshes with --watch")
    p.add_argument("--count", type=at_least(1), help="with --watch: stop after this many refreshes")
    p.set_defaults(func=cmd_status)
