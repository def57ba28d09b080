"""What every command shares: output, common options, opening a deployment. Imports stay light."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from node.errors import NodeError

if TYPE_CHECKING:
    from ledger.chain import Chain
    from ledger.client import FederationClient
    from ledger.deploy import Deployment
    from ledger.devnet import DevnetState

__all__ = [
    "LOCAL_IPFS",
    "LOCAL_RPC",
    "STATE_DIR_ENV",
    "at_least",
    "deployment_args",
    "devnet_state",
    "ipfs_for",
    "keystore_args",
    "open_deployment",
    "port_number",
    "writable_file",
    "positive_float",
    "rounds_text",
    "rpc_for",
    "say",
    "short",
    "state_dir",
    "state_dir_arg",
    "tokens",
    "why_unpaid",
]

TOKEN_DECIMALS = 18
STATE_DIR_ENV = "FEDCHAIN_STATE_DIR"
LOCAL_RPC = "http://127.0.0.1:8545"
LOCAL_IPFS = "/ip4/127.0.0.1/tcp/5001/http"


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def tokens(amount: str | int) -> str:
    """Token base units as whole tokens, four decimals."""
    return f"{int(amount) / 10**TOKEN_DECIMALS:.4f}"


def short(value: str | None, n: int = 10) -> str:
    return "-" if not value else (value if len(value) <= n + 2 else value[: n + 2] + "…")


def rounds_text(rounds: list[int]) -> str:
    """Round numbers as runs: [2, 3, 4, 7] -> "2-4, 7"."""
    runs: list[list[int]] = []
    for r in sorted(rounds):
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def why_unpaid() -> str:
    """Why a finalized round pays a member, or everyone, nothing (node/core/scoring.py, node/core/valuation.py)."""
    from node.core.scoring import MIN_AGREEMENT, SCALE
    from node.core.valuation import EVAL_SCALE, MIN_GAIN

    return (
        f"scoring by agreement, an update earns only if its median agreement with the others' is at least "
        f"{MIN_AGREEMENT / SCALE:g}; scoring by evaluation, a round pays the previous round's updates, each only if "
        f"the others' median rating of its AUC gain is at least {MIN_GAIN / EVAL_SCALE:g}. Near convergence honest "
        "updates are mostly noise, agree less and gain less (soonest with two peers, where each has one other to "
        "agree with or rate it), and a round where no score is positive pays nobody: its reward stays in the pool "
        "(docs/protocol.md, Score)"
    )


# -- argument types: a bad number is refused while parsing, in one line ---------


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `low`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {low} or more, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"  # what argparse names in its message
    return parse


def writable_file(path: Path, what: str) -> None:
    """Refuse, before any work, an output file that cannot be written: its directory missing, or a directory."""
    if path.is_dir():
        raise NodeError(f"{what} {path} is a directory, not a file")
    if not path.parent.is_dir():
        raise NodeError(f"{what} {path}: the directory {path.parent} does not exist")


def port_number(text: str) -> int:
    """An argparse type: a TCP port (1 to 65535)."""
    value = at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


# -- options ------------------------------------------------------------------


def keystore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keystore", type=Path, required=True, help="encrypted JSON keystore of the account")
    p.add_argument("--password-file", type=Path, help="file holding the keystore password (else $FEDCHAIN_PASSWORD)")


def state_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        help=f"the dev-net's state directory, for its endpoints (default: ${STATE_DIR_ENV}, else .fedchain/devnet)",
    )


def deployment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deployment", type=Path, default=Path("deployment.json"), help="deployment file")
    p.add_argument("--rpc", help="JSON-RPC URL (default: the deployment's, else the dev-net's)")
    state_dir_arg(p)


# -- endpoints ----------------------------------------------------------------


def state_dir(args: argparse.Namespace) -> Path:
    """The dev-net's state directory: `--state-dir`, else $FEDCHAIN_STATE_DIR, else .fedchain/devnet."""
    from ledger.devnet import DEFAULT_STATE_DIR

    return Path(getattr(args, "state_dir", None) or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def devnet_state(args: argparse.Namespace) -> DevnetState:
    """The dev-net state in `state_dir(args)`."""
    from ledger.devnet import DevnetState

    return DevnetState.load(state_dir(args))


def _devnet_rpc(args: argparse.Namespace) -> str | None:
    state = devnet_state(args)
    return state.anvil.url if state.anvil is not None else None


def rpc_for(args: argparse.Namespace, deployment: Deployment | None = None) -> str:
    """--rpc, else the deployment's endpoint, else the dev-net's (see `devnet_state`)."""
    if getattr(args, "rpc", None):
        return str(args.rpc)
    if deployment is not None and deployment.rpc_url:
        return deployment.rpc_url
    if (url := _devnet_rpc(args)) is not None:
        return url
    raise NodeError("no RPC endpoint: give --rpc URL (or start one with `fedchain devnet up`)")


def ipfs_for(args: argparse.Namespace) -> str:
    """--ipfs, else the dev-net's first Kubo node's API, else Kubo's default port on this machine."""
    if getattr(args, "ipfs", None):
        return str(args.ipfs)
    kubo = devnet_state(args).kubo
    if kubo:
        from node.store.kubo import KuboNode

        return KuboNode(**kubo[0]).api
    return LOCAL_IPFS


def open_deployment(args: argparse.Namespace) -> tuple[Chain, FederationClient, Deployment]:
    """The chain, the federation client and the deployment that `--deployment` (and `--rpc`) name."""
    from ledger.chain import connect
    from ledger.deploy import Deployment, open_federation

    deployment = Deployment.load(args.deployment)
    chain = connect(rpc_for(args, deployment))
    return chain, open_federation(chain, deployment), deployment
