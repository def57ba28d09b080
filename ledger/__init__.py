"""Everything that talks to the chain: compile, deploy, the contract client, the audit trail.

Names are imported on first use (PEP 562), so `import ledger` (or `ledger.errors`)
costs nothing: a command that never touches the chain never loads web3, and
nothing at run time loads the Solidity compiler (`ledger.compile` is for
`make artifacts` and the staleness test only).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audit import AuditTrail, read_audit
    from .chain import Chain, connect, embedded_chain
    from .client import FederationClient, TokenClient, commitment, proposal_id
    from .deploy import Deployment, deploy, open_federation
    from .errors import (
        ChainUnreachable,
        CompileError,
        ContractRevert,
        DeploymentError,
        KeystoreError,
        LedgerError,
        SpecError,
        WrongChain,
    )
    from .keystore import create_keystore, keystore_address, load_keystore, read_password
    from .spec import FederationSpec, load_spec, spec_from_dict
    from .types import Accounting, FailReason, MemberInfo, MemberStatus, Phase, RoundInfo

_WHERE = {
    "audit": ("AuditTrail", "read_audit"),
    "chain": ("Chain", "connect", "embedded_chain"),
    "client": ("FederationClient", "TokenClient", "commitment", "proposal_id"),
    "deploy": ("Deployment", "deploy", "open_federation"),
    "errors": (
        *("ChainUnreachable", "CompileError", "ContractRevert", "DeploymentError"),
        *("KeystoreError", "LedgerError", "SpecError", "WrongChain"),
    ),
    "keystore": ("create_keystore", "keystore_address", "load_keystore", "read_password"),
    "spec": ("FederationSpec", "load_spec", "spec_from_dict"),
    "types": ("Accounting", "FailReason", "MemberInfo", "MemberStatus", "Phase", "RoundInfo"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "Accounting",
    "AuditTrail",
    "Chain",
    "ChainUnreachable",
    "CompileError",
    "ContractRevert",
    "Deployment",
    "deploy",
    "DeploymentError",
    "FailReason",
    "FederationClient",
    "FederationSpec",
    "KeystoreError",
    "LedgerError",
    "MemberInfo",
    "MemberStatus",
    "Phase",
    "RoundInfo",
    "SpecError",
    "TokenClient",
    "WrongChain",
    "commitment",
    "connect",
    "create_keystore",
    "embedded_chain",
    "keystore_address",
    "load_keystore",
    "load_spec",
    "open_federation",
    "proposal_id",
    "read_audit",
    "read_password",
    "spec_from_dict",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
