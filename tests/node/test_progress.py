"""The status line long commands show on a terminal, and nothing anywhere else."""

from __future__ import annotations

import io

from node.cli.progress import StatusLine


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_one_line_rewritten_in_place_and_cleared() -> None:
    term = _Terminal()
    status = StatusLine(term)
    status("round 1/10: bank committed")
    status("round 1/10: hotel committed " + "x" * 500)  # longer than any terminal: cut to the width
    status.clear()
    status.clear()  # once cleared, nothing more to erase
    parts = term.getvalue().split("\r\x1b[K")
    assert parts == ["", "round 1/10: bank committed", parts[2], ""]
    assert parts[2].startswith("round 1/10: hotel") and parts[2].endswith("…") and len(parts[2]) < 200


def test_a_pipe_or_a_quiet_run_gets_nothing() -> None:
    piped = io.StringIO()  # not a terminal: a log, CI, `| tee`
    StatusLine(piped)("round 1/10: bank committed")
    quiet = _Terminal()
    StatusLine(quiet, enabled=False)("round 1/10: bank committed")
    assert piped.getvalue() == "" and quiet.getvalue() == ""
