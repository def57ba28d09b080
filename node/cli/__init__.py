"""The `fedchain` command line. Errors print one line and exit non-zero; --debug (anywhere) shows the traceback.

Building the parser imports no heavy module: each command imports what it needs
when it runs, so `fedchain --help` and the chain-only commands never load torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from ledger.errors import LedgerError
from node import version
from node.cli.audit import add_audit_commands
from node.cli.chain import add_chain_commands
from node.cli.demo import add_demo_command
from node.cli.model import add_model_commands
from node.cli.peer import add_peer_commands, add_spec_commands
from node.cli.status import add_status_command
from node.cli.vertical import add_vertical_commands
from node.errors import NodeError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (subcommand parsers are of this class as well)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fedchain: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedchain", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks (accepted anywhere on the line)")
    parser.add_argument("--version", action="version", version=f"fedchain {version()}", help="print the version")
    sub = parser.add_subparsers(dest="command", required=True)
    add_chain_commands(sub)
    add_audit_commands(sub)
    add_demo_command(sub)
    add_model_commands(sub)
    add_peer_commands(sub)
    add_spec_commands(sub)
    add_status_command(sub)
    add_vertical_commands(sub)
    return parser


def _take_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """argv without its `--debug` flags (before any `--`), and whether there was one: the flag is
    global, so `fedchain node run --debug` means what `fedchain --debug node run` does."""
    args = list(argv)
    end = args.index("--") if "--" in args else len(args)
    rest = [a for a in args[:end] if a != "--debug"]
    return rest + args[end:], len(rest) < end


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv, debug = _take_debug(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.debug = debug
    try:
        return int(args.func(args))
    except (LedgerError, NodeError) as exc:
        if args.debug:
            raise
        sys.stderr.write(f"fedchain: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("fedchain: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (`fedchain ... | head`): not an error of ours
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file we were told to read or write: one line, like any other bad input
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"fedchain: error: {where}{exc.strerror or exc}\n")
        return 1
