"""The ledger's exceptions: one root, and one named class per contract custom error.

Every custom error declared in `contracts/IFederation.sol` becomes a subclass of
`ContractRevert` with the same name, carrying the decoded arguments, so callers
catch `NotMember` rather than parse revert data.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ChainUnreachable",
    "CompileError",
    "ContractRevert",
    "DeploymentError",
    "KeystoreError",
    "LedgerError",
    "SpecError",
    "WrongChain",
    "revert_class",
]


class LedgerError(Exception):
    """Root of everything the ledger raises on purpose."""


class ChainUnreachable(LedgerError):
    """The JSON-RPC endpoint did not answer."""


class WrongChain(LedgerError):
    """The endpoint serves another chain than the one expected."""


class DeploymentError(LedgerError):
    """A deployment file is missing, unreadable, or names no contract at its address."""


class KeystoreError(LedgerError):
    """A keystore is missing, malformed, or its password is wrong."""


class SpecError(LedgerError):
    """A federation spec is missing a field or holds an invalid value."""


class CompileError(LedgerError):
    """The Solidity compiler is missing or rejected the sources."""


class ContractRevert(LedgerError):
    """A contract call reverted. Subclasses are named after the custom error."""

    error_name: ClassVar[str] = "revert"

    def __init__(self, message: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error_args: dict[str, Any] = args or {}


_REVERT_CLASSES: dict[str, type[ContractRevert]] = {}


def revert_class(name: str) -> type[ContractRevert]:
    """The ContractRevert subclass named `name` (created once, then reused)."""
    cls = _REVERT_CLASSES.get(name)
    if cls is None:
        cls = type(name, (ContractRevert,), {"error_name": name, "__module__": __name__})
        _REVERT_CLASSES[name] = cls
    return cls
