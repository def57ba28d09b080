"""A local development network: anvil (and, with the node work, Kubo) in the background.

`fedchain devnet up` starts the services detached from the terminal and records
their endpoints and process ids in a state file; `down` stops them; `status`
says what answers. Nothing here is needed by the embedded default.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ChainUnreachable, LedgerError
from .files import write_atomic
from .toolchain import anvil_path, geth_path

__all__ = [
    "DEVNET_CHAIN_ID",
    "GETH_DEV_CHAIN_ID",
    "AnvilProcess",
    "DevnetState",
    "GethProcess",
    "free_port",
    "start_anvil",
    "start_geth",
    "stop_pid",
]

DEVNET_CHAIN_ID = 31337
GETH_DEV_CHAIN_ID = 1337  # geth --dev's
GETH_GAS_LIMIT = 30_000_000  # anvil's default: the gas tests' settlement limit holds on both
DEFAULT_STATE_DIR = Path(".fedchain") / "devnet"
DEV_BALANCE_ETH = 1_000_000  # per development account: long test sessions fund many accounts from them
STATE_INTERVAL = 2  # seconds between anvil's saves of a dev-net chain (a SIGKILL loses at most this much)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; ask /proc whether it is really running
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM `pid` (and its process group), then SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            if not pid_alive(pid):
                return
            time.sleep(0.05)


@dataclass
class AnvilProcess:
    """A running anvil: its process id, RPC URL and log file."""

    pid: int
    port: int
    chain_id: int
    log: str
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        stop_pid(self.pid)


def start_anvil(
    port: int | None = None,
    chain_id: int = DEVNET_CHAIN_ID,
    log_path: Path | None = None,
    timeout: float = 30.0,
    block_time: float | None = None,
    state_file: Path | None = None,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
) -> AnvilProcess:
    """Start anvil on 127.0.0.1 (or `host`, run through the argv `prefix`: a network namespace's address
    and `ip netns exec`) in its own process group and wait until it answers.

    With `block_time`, anvil mines a block every so many seconds, as a real chain does, so
    chain time (and with it every phase deadline) moves on while nobody sends anything.
    Without it, a block is mined per transaction: fast for tests that move time themselves.
    With `state_file`, anvil starts from the chain saved there (if any) and saves its chain
    there every `STATE_INTERVAL` seconds and when it stops, so a restart keeps the contracts,
    their storage and their logs.
    """
    binary = anvil_path()
    if binary is None:
        raise LedgerError("anvil is not installed: run `make setup`")
    port = port or free_port()
    log = log_path or Path(os.devnull)
    proc = _launch(
        [
            *prefix,
            str(binary),
            *("--host", host, "--port", str(port), "--chain-id", str(chain_id)),
            *("--balance", str(DEV_BALANCE_ETH)),
            # past its in-memory limit anvil writes old block states to ~/.foundry/anvil/tmp
            # and never removes them (tens of GB over a test session): keep none on disk.
            # Nothing here reads state at an old block; logs and receipts are kept.
            *("--max-persisted-states", "0"),
            *(("--block-time", f"{block_time:g}") if block_time else ()),
            *(("--state", str(state_file), "--state-interval", str(STATE_INTERVAL)) if state_file else ()),
        ],
        log,
    )
    anvil = AnvilProcess(proc.pid, port, chain_id, str(log), host)
    _await_rpc("anvil", proc, anvil.url, chain_id, anvil.stop, log, timeout)
    return anvil


def _launch(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`argv` in its own process group (so `stop_pid` stops all of it), its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def _await_rpc(
    name: str,
    proc: subprocess.Popen[bytes],
    url: str,
    chain_id: int,
    stop: Callable[[], None],
    log: Path,
    timeout: float,
) -> None:
    """Wait until the chain node `proc` answers JSON-RPC at `url` with `chain_id`; stop it and raise if it
    exits or stays silent for `timeout` seconds."""
    from .chain import connect  # web3 loads only when a chain is started

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise LedgerError(f"{name} exited with code {proc.returncode} at start (log: {log})")
        try:
            connect(url, chain_id, timeout=1.0)
            return
        except ChainUnreachable:
            if time.monotonic() > deadline:
                stop()
                raise LedgerError(f"{name} did not answer at {url} within {timeout:.0f}s") from None
            time.sleep(0.1)


@dataclass
class GethProcess:
    """A running `geth --dev`: its process id, RPC port, data directory and log file."""

    pid: int
    port: int
    datadir: str
    log: str
    chain_id: int = GETH_DEV_CHAIN_ID

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_pid(self.pid)


def start_geth(
    datadir: Path, port: int | None = None, log_path: Path | None = None, period: int = 0, timeout: float = 60.0
) -> GethProcess:
    """Start go-ethereum in developer mode on 127.0.0.1 and wait until it answers.

    `--dev` is a one-node proof-of-stake chain with a pre-funded, unlocked developer
    account (`Chain.fund` sends from it). With `period` 0 it seals a block per
    transaction; with `period` N, one every N seconds, transactions or not. It cannot
    move its clock: a test of a timeout runs on real windows there. No peer-to-peer
    port, discovery or IPC; the engine API on a free port so several can run at once.
    """
    binary = geth_path()
    if binary is None:
        raise LedgerError("geth is not installed: run `make setup`")
    port = port or free_port()
    log = log_path or Path(os.devnull)
    datadir.mkdir(parents=True, exist_ok=True)
    proc = _launch(
        [
            str(binary),
            *("--dev", "--dev.period", str(period), "--dev.gaslimit", str(GETH_GAS_LIMIT)),
            *("--datadir", str(datadir), "--ipcdisable", "--nodiscover", "--maxpeers", "0", "--port", "0"),
            *("--http", "--http.addr", "127.0.0.1", "--http.port", str(port), "--http.api", "eth,net,web3,txpool"),
            *("--authrpc.port", str(free_port()), "--verbosity", "2"),
        ],
        log,
    )
    geth = GethProcess(proc.pid, port, str(datadir), str(log))
    _await_rpc("geth", proc, geth.url, GETH_DEV_CHAIN_ID, geth.stop, log, timeout)
    return geth


@dataclass
class DevnetState:
    """What `devnet up` started, saved as JSON in the state directory.

    `kubo` holds the IPFS nodes' records as the node package writes them (the ledger
    only keeps them: it knows nothing of IPFS).
    """

    anvil: AnvilProcess | None = None
    kubo: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def path(state_dir: Path) -> Path:
        return state_dir / "state.json"

    @classmethod
    def load(cls, state_dir: Path) -> DevnetState:
        path = cls.path(state_dir)
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            anvil = AnvilProcess(**data["anvil"]) if data.get("anvil") else None
            return cls(anvil=anvil, kubo=list(data.get("kubo", [])))
        except (ValueError, TypeError, KeyError) as exc:
            raise LedgerError(f"devnet state file {path} is corrupt; remove it after stopping stray processes") from exc

    def save(self, state_dir: Path) -> None:
        doc = {"anvil": asdict(self.anvil) if self.anvil else None, "kubo": self.kubo}
        write_atomic(self.path(state_dir), json.dumps(doc, indent=2) + "\n")
