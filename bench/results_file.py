"""What every benchmark shares: the machine stamp and writing results next to each other."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent


def portable(value: Any) -> Any:
    """`value` with every absolute path inside the repository written relative to it (`node/datasets/...`):
    result files must not name the machine that made them."""
    if isinstance(value, str) and value.startswith(f"{REPO}/"):
        return value.removeprefix(f"{REPO}/")
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    return value


def stamp(*packages: str, tools: bool = False) -> dict[str, str]:
    """Date, machine, Python, the named packages' versions and, with `tools`, solc's, anvil's and Kubo's."""
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
    }
    meta.update({p: importlib.metadata.version(p) for p in packages})
    if tools:
        from ledger.toolchain import tools as outside_tools

        meta.update({t.name: t.version or "missing" for t in outside_tools()})
    return meta


def write(stem: str, lines: list[str], data: dict[str, Any]) -> None:
    """Write bench/results/STEM.md and STEM.json, and print the Markdown."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    (RESULTS / f"{stem}.json").write_text(json.dumps(portable(data), indent=2) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")


def progress(stem: str, text: str) -> None:
    """One line on stderr saying where benchmark `stem` is (`make bench` runs for an hour; stdout keeps the results)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] bench.{stem}: {text}\n")
    sys.stderr.flush()


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def process_cpu(pid: int | None = None) -> float:
    """User + system CPU seconds spent so far by process `pid` (all its threads), or by this process."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:  # /proc/<pid>/stat: utime and stime are fields 14 and 15, counted after the command's closing ")"
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
