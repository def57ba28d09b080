"""Everything that talks to the chain: compile, deploy, the contract client, the audit trail."""

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

__all__ = [
    "Accounting",
    "AuditTrail",
    "Chain",
    "ChainUnreachable",
    "CompileError",
    "ContractRevert",
    "Deployment",
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
    "deploy",
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
