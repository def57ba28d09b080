"""A vertical member's working state on its own disk, so that a member that restarts mid-task goes on.

A member saves, after each step that changed something (and before it sends
anything that depends on fresh randomness: PSI secrets, sample ids), what it
cannot get back from the chain: its PSI secrets and what the PSI gave it, the
alignment, its model and optimizer, where it is in training, and the digests
of what it sent this epoch. Messages it received are not saved: they are on
chain and in IPFS, and a member that restarts reads them again.

The file is encrypted with the member's keystore password: a NumPy archive
(arrays, and a JSON header as bytes; no pickle) sealed with ChaCha20-Poly1305
under a key derived with scrypt from the password and a random salt kept in
the file (both from `cryptography`). A file that does not open (another
password, tampered, truncated) is refused in one line, never half-read.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ledger.files import write_atomic
from node.errors import NodeError

__all__ = ["StateFile", "load_module", "load_optimizer", "module_arrays", "optimizer_arrays"]

_MAGIC = b"FCVST1\x00\x00"
_SALT = 16
_NONCE = 12
_META = "meta"
_SCRYPT_N = 2**15  # about 0.1 s and 32 MB once per process: the key is kept for later saves


class StateFile:
    """One member's state for one task: `save` replaces it atomically, `load` returns it or None."""

    def __init__(self, path: Path, password: str) -> None:
        self.path = path
        self._password = password.encode()
        self._keys: dict[bytes, bytes] = {}  # salt -> derived key

    def _key(self, salt: bytes) -> bytes:
        if salt not in self._keys:
            self._keys[salt] = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(self._password)
        return self._keys[salt]

    def save(self, meta: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        buf = io.BytesIO()
        header = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(buf, allow_pickle=False, **{_META: header, **arrays})
        salt = next(iter(self._keys), None) or os.urandom(_SALT)
        nonce = os.urandom(_NONCE)
        sealed = ChaCha20Poly1305(self._key(salt)).encrypt(nonce, buf.getvalue(), _MAGIC + salt)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, _MAGIC + salt + nonce + sealed, mode=0o600)

    def load(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NodeError(f"{self.path}: cannot read this member's state ({exc.strerror})") from None
        head = len(_MAGIC) + _SALT + _NONCE
        if len(data) < head or not data.startswith(_MAGIC):
            raise NodeError(f"{self.path}: not a fedchain member state")
        salt, nonce = data[len(_MAGIC) : len(_MAGIC) + _SALT], data[len(_MAGIC) + _SALT : head]
        try:
            plain = ChaCha20Poly1305(self._key(salt)).decrypt(nonce, data[head:], _MAGIC + salt)
        except InvalidTag:
            raise NodeError(f"{self.path}: this member's state does not open (another password, or changed)") from None
        try:
            with np.load(io.BytesIO(plain), allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
            meta = json.loads(bytes(arrays.pop(_META)).decode())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise NodeError(f"{self.path}: a damaged member state ({exc})") from None
        if not isinstance(meta, dict):
            raise NodeError(f"{self.path}: a damaged member state")
        return meta, arrays


def module_arrays(prefix: str, module: torch.nn.Module) -> dict[str, npt.NDArray[Any]]:
    """A network's parameters as arrays named `prefix` + the parameter's name."""
    return {prefix + k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    state = {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)


def optimizer_arrays(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, npt.NDArray[Any]], Any]:
    """An optimizer's state (Adam's moments and step counts) as arrays, and its parameter groups (JSON)."""
    state = opt.state_dict()
    arrays = {
        f"{prefix}{index}/{name}": value.detach().numpy().copy()
        for index, values in state["state"].items()
        for name, value in values.items()
    }
    return arrays, state["param_groups"]


def load_optimizer(
    prefix: str, opt: torch.optim.Optimizer, arrays: Mapping[str, npt.NDArray[Any]], groups: Any
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in arrays.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split("/", 1)
            state.setdefault(int(index), {})[name] = torch.from_numpy(np.array(value))
    opt.load_state_dict({"state": state, "param_groups": groups})
