"""Accounts from encrypted JSON keystores (the Web3 Secret Storage format).

A private key never travels on the command line: the password comes from a
file, from FEDCHAIN_PASSWORD, or from a prompt on a terminal.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from .errors import KeystoreError

__all__ = ["PASSWORD_ENV", "create_keystore", "keystore_address", "load_keystore", "read_password"]

PASSWORD_ENV = "FEDCHAIN_PASSWORD"
_warned: set[Path] = set()  # password files already warned about in this process


def _warn_if_shared(password_file: Path) -> None:
    """One line on stderr, once per file, when others than its owner may read it."""
    try:
        mode = stat.S_IMODE(password_file.stat().st_mode)
    except OSError:
        return
    if mode & 0o077 and password_file.resolve() not in _warned:
        _warned.add(password_file.resolve())
        sys.stderr.write(
            f"fedchain: warning: password file {password_file} can be read by others (mode {mode:04o}); "
            f"`chmod 600 {password_file}`\n"
        )


def read_password(password_file: Path | None = None, *, prompt: str = "Keystore password: ") -> str:
    """The keystore password: from `password_file`, else $FEDCHAIN_PASSWORD, else a terminal prompt."""
    if password_file is not None:
        _warn_if_shared(password_file)
        try:
            return password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"password file {password_file} cannot be read: {exc.strerror}") from exc
    if (value := os.environ.get(PASSWORD_ENV)) is not None:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    raise KeystoreError(f"no keystore password: give --password-file or set {PASSWORD_ENV}")


def create_keystore(path: Path, password: str, private_key: str | None = None) -> str:
    """Write a new encrypted keystore (a fresh key unless one is given); returns its address."""
    if path.exists():
        raise KeystoreError(f"keystore {path} already exists; refusing to overwrite it")
    if not password:
        raise KeystoreError(f"refusing an empty password for keystore {path}")
    account = Account.from_key(private_key) if private_key else Account.create()
    blob = Account.encrypt(account.key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(blob, fh)
    return str(account.address)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise KeystoreError(f"keystore {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"keystore {path} is not a JSON keystore") from exc


def keystore_address(path: Path) -> str:
    """The address a keystore holds (stored in clear in the file; no password needed)."""
    blob = _read(path)
    address = blob.get("address") if isinstance(blob, dict) else None
    if not isinstance(address, str) or not is_address("0x" + address.removeprefix("0x")):
        raise KeystoreError(f"keystore {path} names no address")
    return str(to_checksum_address("0x" + address.removeprefix("0x")))


def load_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt the keystore at `path`."""
    blob = _read(path)
    try:
        key = Account.decrypt(blob, password)
    except ValueError as exc:
        message = str(exc)
        if "MAC mismatch" in message:
            raise KeystoreError(f"wrong password for keystore {path}") from exc
        raise KeystoreError(f"keystore {path} is malformed: {message}") from exc
    except (KeyError, TypeError) as exc:
        raise KeystoreError(f"keystore {path} is malformed (missing {exc})") from exc
    account: LocalAccount = Account.from_key(key)
    return account
