"""The `fedchain` command line. Errors print one line and exit non-zero; --debug shows the traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ledger import LedgerError

from .chain_commands import add_chain_commands
from .errors import NodeError
from .node_commands import add_node_commands, add_verify_command

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedchain", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = add_chain_commands(sub)
    add_verify_command(audit)
    add_node_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
