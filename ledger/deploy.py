"""Deploy a federation (token + contract) and read and write deployment files."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from web3.exceptions import ContractLogicError

from .chain import Chain
from .client import FederationClient, TokenClient, revert_error
from .contracts import artifact
from .errors import DeploymentError, LedgerError, WrongChain
from .files import write_atomic
from .spec import TOKEN_UNIT, FederationSpec

__all__ = ["Deployment", "deploy", "deploy_contract", "open_federation"]

DEPLOYMENT_VERSION = 1


@dataclass(frozen=True)
class Deployment:
    """Where a federation lives. Written as JSON by `fedchain deploy`."""

    chain_id: int
    federation: str
    token: str
    block: int
    spec_hash: str
    deployer: str
    founders: list[str]
    rpc_url: str | None = None
    version: int = DEPLOYMENT_VERSION

    def save(self, path: Path) -> None:
        """Write atomically: a crash never leaves half a file."""
        write_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise DeploymentError(f"deployment file {path} does not exist (run `fedchain deploy`)") from exc
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"deployment file {path} is not valid JSON") from exc
        _check_fields(path, data)
        deployment = cls(**data)
        for field in ("federation", "token"):
            if not is_address(getattr(deployment, field)):
                raise DeploymentError(f"deployment file {path}: {field} is not an address")
        return deployment


_INTEGERS = ("chain_id", "block", "version")


def _check_fields(path: Path, data: Any) -> None:
    """Every field there, none unknown, each of its type: a bad file is named, key by key, in one line."""
    if not isinstance(data, dict):
        raise DeploymentError(f"deployment file {path} is not a JSON object")
    known = {f.name: f for f in fields(Deployment)}
    missing = [name for name, f in known.items() if f.default is MISSING and name not in data]
    if missing:
        raise DeploymentError(f"deployment file {path} lacks {', '.join(missing)}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise DeploymentError(f"deployment file {path} has unknown fields: {', '.join(unknown)}")
    for name, value in data.items():
        if name in _INTEGERS:
            ok, expected = isinstance(value, int) and not isinstance(value, bool) and value >= 0, "an integer"
        elif name == "founders":
            ok, expected = isinstance(value, list) and all(isinstance(x, str) for x in value), "a list of addresses"
        elif name == "rpc_url":
            ok, expected = value is None or isinstance(value, str), "a URL or null"
        else:
            ok, expected = isinstance(value, str), "a string"
        if not ok:
            raise DeploymentError(f"deployment file {path}: {name} = {json.dumps(value)}: expected {expected}")


def deploy_contract(chain: Chain, deployer: LocalAccount, name: str, *args: Any) -> tuple[str, int]:
    """Deploy the committed artifact `name` with constructor `args`; returns (address, block)."""
    art = artifact(name)
    factory = chain.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    try:
        tx = factory.constructor(*args).build_transaction(
            {
                "from": deployer.address,
                "nonce": chain.w3.eth.get_transaction_count(deployer.address, "pending"),
                "chainId": chain.chain_id,
            }
        )
    except ContractLogicError as exc:
        raise revert_error(exc) from exc
    signed = deployer.sign_transaction(tx)  # type: ignore[arg-type]
    receipt = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_raw_transaction(signed.raw_transaction))
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise LedgerError(f"deploying {name} failed in block {receipt['blockNumber']}")
    return str(receipt["contractAddress"]), int(receipt["blockNumber"])


def deploy(chain: Chain, deployer: LocalAccount, spec: FederationSpec) -> Deployment:
    """Deploy the token and the federation, fund the pool, and grant founders their tokens."""
    tok = spec.token
    supply = int(tok["supply"] * TOKEN_UNIT)
    token_address, block = deploy_contract(
        chain, deployer, "RewardToken", tok["name"], tok["symbol"], supply, deployer.address
    )
    fed_address, _ = deploy_contract(
        chain, deployer, "Federation", token_address, spec.hash, spec.chain_config(), spec.founders
    )
    federation = FederationClient(chain, fed_address)
    token = TokenClient(chain, token_address)
    if tok["pool"] > 0:
        federation.fund(deployer, int(tok["pool"] * TOKEN_UNIT))
    grant = int(tok["founder_grant"] * TOKEN_UNIT)
    for founder in spec.founders:
        if grant > 0 and founder != deployer.address:
            token.transfer(deployer, founder, grant)
    return Deployment(
        chain_id=chain.chain_id,
        federation=fed_address,
        token=token_address,
        block=block,
        spec_hash="0x" + spec.hash.hex(),
        deployer=deployer.address,
        founders=spec.founders,
        rpc_url=chain.url,
    )


def open_federation(chain: Chain, deployment: Deployment) -> FederationClient:
    """A client for the deployment's federation, after checking chain id and code."""
    if chain.chain_id != deployment.chain_id:
        raise WrongChain(
            f"the RPC endpoint serves chain id {chain.chain_id}; the deployment is on {deployment.chain_id}"
        )
    address = to_checksum_address(deployment.federation)
    if not chain.w3.eth.get_code(address):
        raise DeploymentError(f"no contract at {address} on chain {chain.chain_id}: is this the right chain?")
    return FederationClient(chain, address)
