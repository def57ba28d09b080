"""What every command shares: output, common options, opening a deployment. Imports stay light."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from node.errors import NodeError

if TYPE_CHECKING:
    from ledger.chain import Chain
    from ledger.client import FederationClient
    from ledger.deploy import Deployment

__all__ = ["deployment_args", "keystore_args", "open_deployment", "rpc_for", "say", "short", "tokens"]

TOKEN_DECIMALS = 18


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def tokens(amount: str | int) -> str:
    """Token base units as whole tokens, four decimals."""
    return f"{int(amount) / 10**TOKEN_DECIMALS:.4f}"


def short(value: str | None, n: int = 10) -> str:
    return "-" if not value else (value if len(value) <= n + 2 else value[: n + 2] + "…")


def keystore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keystore", type=Path, required=True, help="encrypted JSON keystore of the account")
    p.add_argument("--password-file", type=Path, help="file holding the keystore password (else $FEDCHAIN_PASSWORD)")


def deployment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deployment", type=Path, default=Path("deployment.json"), help="deployment file")
    p.add_argument("--rpc", help="JSON-RPC URL (default: the deployment's, else the devnet's)")


def rpc_for(args: argparse.Namespace, deployment: Deployment | None = None) -> str:
    """--rpc, else the deployment's endpoint, else the running dev-net's."""
    from ledger.devnet import DEFAULT_STATE_DIR, DevnetState

    if getattr(args, "rpc", None):
        return str(args.rpc)
    if deployment is not None and deployment.rpc_url:
        return deployment.rpc_url
    state = DevnetState.load(DEFAULT_STATE_DIR)
    if state.anvil is not None:
        return state.anvil.url
    raise NodeError("no RPC endpoint: give --rpc URL (or start one with `fedchain devnet up`)")


def open_deployment(args: argparse.Namespace) -> tuple[Chain, FederationClient, Deployment]:
    """The chain, the federation client and the deployment that `--deployment` (and `--rpc`) name."""
    from ledger.chain import connect
    from ledger.deploy import Deployment, open_federation

    deployment = Deployment.load(args.deployment)
    chain = connect(rpc_for(args, deployment))
    return chain, open_federation(chain, deployment), deployment
