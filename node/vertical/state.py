"""A vertical member's working state on its own disk, so that a member that restarts mid-task goes on.

A member saves, after each step that changed something (and before it sends
anything that depends on fresh randomness: PSI secrets, sample ids), what it
cannot get back from the chain: its PSI secrets and what the PSI gave it, the
alignment, its model and optimizer, where it is in training. Messages it
received, and the digests of those it sent, are on chain and in IPFS: a member
that restarts reads them again.

Two files: the part that changes every step (the model, the optimizer, where
training is), and beside it (`.static`) the part that is written once or
twice (PSI secrets, the alignment: large with many customers), bound to the
first by its sha256. Each is a NumPy archive (arrays, and a JSON header as
bytes; no pickle) sealed with ChaCha20-Poly1305 under a key derived with HKDF
from the member's account key, a random salt kept in the file and the task and
member it is for (all from `cryptography`): nobody without the account key can
read it, and a file that does not open (another account, another task,
tampered, truncated) is refused in one line, never half-read.
"""

from __future__ import annotations

import hashlib
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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.files import write_atomic
from node.errors import NodeError

__all__ = [
    "StateFile",
    "load_module",
    "load_optimizer",
    "module_arrays",
    "optimizer_arrays",
    "pack_arrays",
    "unpack_arrays",
]

_MAGIC = b"FCVST2\x00\x00"
_SALT = 16
_NONCE = 12
_META = "meta"
_STATIC = "static"


class StateFile:
    """One member's state for one task: `save` replaces it atomically, `load` returns it or None."""

    def __init__(self, path: Path, secret: bytes, context: str) -> None:
        self.path = path
        self.static_path = path.with_name(path.name + ".static")
        self._secret = secret
        self._context = context.encode()
        self._salt = os.urandom(_SALT)
        self._keys: dict[bytes, bytes] = {}  # salt -> key
        self._static_digest: str | None = None

    def _key(self, salt: bytes) -> bytes:
        if salt not in self._keys:
            info = b"fedchain/vertical-state/v2|" + self._context
            self._keys[salt] = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(self._secret)
        return self._keys[salt]

    def _seal(self, meta: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]], part: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        aad = _MAGIC + self._salt + part + b"|" + self._context
        plain = pack_arrays(meta, arrays)
        return _MAGIC + self._salt + nonce + ChaCha20Poly1305(self._key(self._salt)).encrypt(nonce, plain, aad)

    def _open(self, path: Path, part: bytes) -> tuple[bytes, dict[str, Any], dict[str, npt.NDArray[Any]]] | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NodeError(f"{path}: cannot read this member's state ({exc.strerror})") from None
        head = len(_MAGIC) + _SALT + _NONCE
        if len(data) < head or not data.startswith(_MAGIC):
            raise NodeError(f"{path}: not a fedchain member state")
        salt, nonce = data[len(_MAGIC) : len(_MAGIC) + _SALT], data[len(_MAGIC) + _SALT : head]
        aad = _MAGIC + salt + part + b"|" + self._context
        try:
            plain = ChaCha20Poly1305(self._key(salt)).decrypt(nonce, data[head:], aad)
        except InvalidTag:
            why = "another account or task, or changed"
            raise NodeError(f"{path}: this member's state does not open ({why})") from None
        meta, arrays = unpack_arrays(plain, f"{path}: a damaged member state")
        self._salt = salt
        return data, meta, arrays

    def save(
        self,
        meta: Mapping[str, Any],
        arrays: Mapping[str, npt.NDArray[Any]],
        static: Mapping[str, npt.NDArray[Any]] | None = None,
    ) -> None:
        """Replace the state; `static`, when given, replaces the static part too (else the last one stays)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if static is not None:
            sealed = self._seal({}, static, b"static")
            write_atomic(self.static_path, sealed, mode=0o600)
            self._static_digest = hashlib.sha256(sealed).hexdigest()
        sealed = self._seal({**meta, _STATIC: self._static_digest}, arrays, b"state")
        write_atomic(self.path, sealed, mode=0o600)

    def load(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]] | None:
        """The state and its static part's arrays, or None when there is none."""
        opened = self._open(self.path, b"state")
        if opened is None:
            return None
        _, meta, arrays = opened
        digest = meta.pop(_STATIC, None)
        if digest is not None:
            static = self._open(self.static_path, b"static")
            if static is None or hashlib.sha256(static[0]).hexdigest() != digest:
                raise NodeError(f"{self.static_path}: missing, or not the one {self.path} was saved with")
            arrays.update(static[2])
        self._static_digest = digest
        return meta, arrays

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.static_path.unlink(missing_ok=True)


def pack_arrays(meta: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """Arrays and a JSON header as one NumPy archive (no pickle)."""
    buf = io.BytesIO()
    header = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    np.savez(buf, allow_pickle=False, **{_META: header, **arrays})
    return buf.getvalue()


def unpack_arrays(data: bytes, refused: str) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """The header and arrays `pack_arrays` made (loading runs no code); anything else is NodeError(`refused`)."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("not an archive of arrays")
        with archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(bytes(arrays.pop(_META)).decode())
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise NodeError(f"{refused} ({exc})") from None
    if not isinstance(meta, dict):
        raise NodeError(refused)
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
