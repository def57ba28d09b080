"""One atomic file writer: a crash never leaves half a file, and readers see the old or the new one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes | str, mode: int | None = None, fsync: bool = True) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename it over `path`.

    `mode` sets the file's permission bits before the rename (e.g. 0o600 for a secret);
    `fsync` flushes it to disk first, so the rename never exposes an empty file after a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
