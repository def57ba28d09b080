"""Progress for a person at a terminal: one status line on stderr, rewritten in place.

Long commands (`fedchain demo`, its vertical and dev-net forms) report each
step through a `Callable[[str], None]`; this is the one a terminal gets. It
writes only when stderr is a terminal, so logs, pipes, CI and `--json` output
stay as they were, and it clears itself before any other line is printed.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO

from rich.cells import cell_len, set_cell_size

__all__ = ["StatusLine"]

_CLEAR = "\r\x1b[K"  # to the line's start, erase to its end


class StatusLine:
    """`status(text)` shows `text` on one line of `stream` (stderr), replacing the last; `clear()` removes it."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._shown = False

    def __call__(self, text: str) -> None:
        if not self.enabled:
            return
        try:  # the width of the terminal this stream is on (stdout may be a file or a pipe)
            width = os.get_terminal_size(self.stream.fileno()).columns - 1
        except (OSError, ValueError, io.UnsupportedOperation):
            width = 79
        line = text if cell_len(text) <= width else set_cell_size(text, width - 1) + "…"  # never wraps
        self.stream.write(_CLEAR + line)
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the status line (before a line of output, and at the end)."""
        if self._shown:
            self.stream.write(_CLEAR)
            self.stream.flush()
            self._shown = False
