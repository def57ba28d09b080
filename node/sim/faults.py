"""Fault runs: a federation of daemons on real parts, faults injected while its rounds run, and what survived.

`FaultNet.start` builds a dev-net of `n` peers: anvil mining a block a second
(its chain saved to a file, so it can be restarted with nothing lost), one Kubo
node per peer (each peered with every other, so they reconnect after a drop),
the founders deployed, and a `fedchain node run` process per peer. With
`netns=True` the chain node and every peer (its daemon and its Kubo node) sit in
their own network namespaces joined by a bridge (node/sim/netns.py), so a peer
can be cut off from everyone and healed. With `links`, each peer reaches the
chain and its Kubo node through addresses of the caller's choosing (toxiproxy).

While the caller kills and restarts daemons, Kubo nodes and the chain node, or
partitions peers, a follower thread records when each round closed. `report()`
then says, for the run: rounds attempted, finalized and failed (with the
chain's reason), the time from each fault's end to the next finalized round,
and whether anything was lost: no member committed twice in a round, every
daemon exited cleanly on the same model as the chain, tokens are conserved
(the contract holds stakes + pool + unclaimed rewards), and every finalized
round re-verifies as `fedchain audit verify` does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ledger.chain import connect
from ledger.client import FederationClient
from ledger.devnet import AnvilProcess, start_anvil
from ledger.spec import load_spec
from ledger.types import FailReason, Phase
from node.errors import NodeError
from node.horizontal.spec import NodeSpec
from node.horizontal.verify import verify_round
from node.sim.cluster import Devnet, small_federation, spawn_daemon
from node.sim.devnet import kill_process
from node.sim.netns import Topology
from node.store import KuboStore
from node.store.kubo import KuboNode, new_swarm_key, start_kubo

__all__ = ["Fault", "FaultNet", "nothing_lost"]

Links = Callable[[int, str, str], tuple[str, str]]


@dataclass
class Fault:
    """One fault injected: what, on which peer, and when (monotonic seconds) it began and ended."""

    what: str
    began: float
    ended: float | None = None


@dataclass
class FaultNet:
    """A running fault dev-net (see the module's docstring); the `start` context manager stops it all."""

    root: Path
    rounds: int
    topology: Topology | None
    anvil: AnvilProcess
    kubo: list[KuboNode]
    swarm_key: str
    net: Devnet | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[list[Path]] = field(default_factory=list)  # each peer's logs, its current one last
    closed: dict[int, tuple[float, Phase]] = field(default_factory=dict)  # round -> when seen closed, how
    faults: list[Fault] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event)
    _follower: threading.Thread | None = None

    @classmethod
    @contextmanager
    def start(
        cls,
        root: Path,
        csv_path: Path,
        n: int,
        rounds: int,
        netns: bool = False,
        window: int = 20,
        links: Links | None = None,
    ) -> Iterator[FaultNet]:
        with ExitStack() as stack:
            topo = stack.enter_context(Topology.create(["chain", *(f"peer{i}" for i in range(n))])) if netns else None
            anvil = _start_chain(root, topo, root / "anvil.log")
            run = cls(root, rounds, topo, anvil, [], new_swarm_key())
            stack.callback(run._stop_all)
            for i in range(n):
                run.kubo.append(run._start_kubo(i))
                for other in run.kubo[:-1]:
                    run.kubo[-1].connect(other)

            def link(i: int) -> tuple[str, str]:
                own = (run.anvil.url, run.kubo[i].api)
                return links(i, *own) if links is not None else own

            run.net = small_federation(root, anvil, run.kubo, csv_path, n, links=link, window=window)
            for i in range(n):
                run.logs.append([root / f"peer{i}.log"])
                run.procs.append(run._spawn(i))
            run._follower = threading.Thread(target=run._follow, name="fault-follower", daemon=True)
            run._follower.start()
            stack.callback(run._follower.join, 10)
            stack.callback(run._stop.set)
            yield run

    # ---- the parts

    def _start_kubo(self, i: int, api_port: int | None = None, swarm_port: int | None = None) -> KuboNode:
        host, prefix = _where(self.topology, f"peer{i}")
        repo = self.root / f"kubo-{i}"
        return start_kubo(repo, self.swarm_key, api_port=api_port, swarm_port=swarm_port, host=host, prefix=prefix)

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        assert self.net is not None
        prefix = _where(self.topology, f"peer{i}")[1]
        return spawn_daemon(self.net.configs[i], self.rounds, self.logs[i][-1], prefix=prefix)

    def _stop_all(self) -> None:
        """Stop every daemon, Kubo node and the chain node; one that fails to stop does not keep the others
        running (they would outlive the topology)."""
        self._stop.set()
        stops: list[Callable[[], None]] = [partial(kill_process, p) for p in self.procs]
        stops += [*(n.stop for n in self.kubo), self.anvil.stop]
        for stop in stops:
            with suppress(Exception):
                stop()

    @property
    def fed(self) -> FederationClient:
        assert self.net is not None
        return self.net.fed

    def log(self, i: int) -> str:
        return self.logs[i][-1].read_text(errors="replace")

    # ---- waiting

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                tails = "\n".join(f"peer{i}: {self.log(i)[-600:]}" for i in range(len(self.procs)))
                raise NodeError(f"timed out after {timeout:.0f}s waiting for {what} (logs in {self.root})\n{tails}")
            time.sleep(0.1)

    def wait_log(self, i: int, text: str, timeout: float = 240) -> None:
        self.wait_until(f"peer{i} to log {text!r}", lambda: text in self.log(i), timeout)

    def wait_closed(self, r: int, timeout: float = 240) -> Phase:
        self.wait_until(f"round {r} to close", lambda: r in self.closed, timeout)
        return self.closed[r][1]

    def wait_done(self, timeout: float = 600) -> list[int]:
        """Wait for every daemon to exit (each stops once the last round closed); their exit codes (-1: still
        running at the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(0.2)  # the list, not its first members: a restarted daemon takes its slot
        return [-1 if code is None else code for code in (p.poll() for p in self.procs)]

    def _follow(self) -> None:
        """Record when each round is first seen closed (a chain that is down is read again later)."""
        assert self.net is not None
        fed: FederationClient | None = None
        r = 1
        while r <= self.rounds and not self._stop.is_set():
            try:
                fed = fed or FederationClient(connect(self.anvil.url, self.anvil.chain_id), self.fed.address)
                phase = fed.round(r).phase
            except Exception:  # the chain node restarted, or is down (any failure): connect again
                fed = None
                self._stop.wait(0.5)
                continue
            if phase.closed:
                self.closed[r] = (time.monotonic(), phase)
                r += 1
                continue
            self._stop.wait(0.25)

    # ---- faults

    @contextmanager
    def fault(self, what: str) -> Iterator[Fault]:
        """A fault injected in the `with` block: recorded, with when it began and when the block ended."""
        f = Fault(what, time.monotonic())
        self.faults.append(f)
        yield f
        f.ended = time.monotonic()

    def kill(self, i: int) -> None:
        """SIGKILL peer i's daemon (its whole process group)."""
        p = self.procs[i]
        if p.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def restart(self, i: int) -> None:
        """Start peer i's daemon again, logging to a new file (not once the run is stopping)."""
        if self._stop.is_set():
            return
        self.logs[i].append(self.root / f"peer{i}-{len(self.logs[i])}.log")
        self.procs[i] = self._spawn(i)

    def partition(self, i: int) -> None:
        assert self.topology is not None, "partitions need netns=True"
        self.topology.partition(f"peer{i}")

    def heal(self, i: int) -> None:
        assert self.topology is not None, "partitions need netns=True"
        self.topology.heal(f"peer{i}")

    def restart_kubo(self, i: int, wipe: bool = False, down: float = 2.0) -> None:
        """Stop peer i's Kubo node and start it again on its ports and peer id, after `down` seconds; with
        `wipe`, everything it stored is gone (the repo made anew; only its identity and config kept)."""
        old = self.kubo[i]
        old.stop()
        repo = Path(old.repo)
        if wipe:
            config = (repo / "config").read_text()
            shutil.rmtree(repo)
            repo.mkdir(parents=True)
            old.ipfs("init", "--profile=test", "--empty-repo")
            (repo / "config").write_text(config)
        time.sleep(down)
        node = self._start_kubo(i, old.api_port, old.swarm_port)
        self.kubo[i] = node
        if (node.api_port, node.swarm_port) != (old.api_port, old.swarm_port):
            raise NodeError(f"peer{i}'s Kubo node came back on other ports: its daemon's config names the old")
        for j, other in enumerate(self.kubo):
            if j != i:
                with suppress(NodeError):  # one down or cut off: the peering reconnects when it is back
                    node.connect(other)

    def restart_chain(self, down: float = 3.0) -> None:
        """Stop the chain node (it saves its chain), and start it again on its port `down` seconds later."""
        self.anvil.stop()
        time.sleep(down)
        host, prefix = (
            (self.topology.address("chain"), self.topology.run_in("chain")) if self.topology else ("127.0.0.1", [])
        )
        n = len(list(self.root.glob("anvil*.log")))
        self.anvil = start_anvil(
            self.anvil.port,
            log_path=self.root / f"anvil-{n}.log",
            block_time=1,
            state_file=self.root / "chain.json",
            host=host,
            prefix=prefix,
        )

    # ---- what survived

    def report(self) -> dict[str, Any]:
        """The run's rounds and checks (see the module's docstring), from the chain, IPFS and the logs."""
        assert self.net is not None
        if self._follower is not None:  # it stops once every round closed; then nothing changes `closed`
            self._follower.join(10)
        self._stop.set()
        fed = self.fed
        codes = [p.poll() for p in self.procs]
        reasons = {
            int(e["args"]["round"]): FailReason(int(e["args"]["reason"])).name.lower().replace("_", " ")
            for e in fed.events("RoundFailed", self.net.block)
        }
        phases = {r: fed.round(r).phase for r in range(1, self.rounds + 1)}
        finalized = [r for r, p in phases.items() if p == Phase.FINALIZED]
        failed = {r: reasons.get(r, "failed") for r, p in phases.items() if p == Phase.FAILED}
        nspec = NodeSpec.from_federation(load_spec(self.net.spec))
        store = KuboStore(self.kubo[0].api)
        verdicts = {r: verify_round(fed, store, nspec, r, self.net.block) for r in finalized}
        unverified = {r: next(x for x in v.lines if x.startswith("MISMATCH")) for r, v in verdicts.items() if not v.ok}
        left_out = {r: [f"peer{self._index(m)}" for m in v.left_out] for r, v in verdicts.items() if v.left_out}
        logged: dict[tuple[int, int], int] = {}  # (peer, round) -> commits its logs say it made
        for i, logs in enumerate(self.logs):
            for log in logs:
                for r in re.findall(r"committed round (\d+)", log.read_text(errors="replace")):
                    logged[(i, int(r))] = logged.get((i, int(r)), 0) + 1
        text = "".join(log.read_text(errors="replace") for logs in self.logs for log in logs)
        models = {
            i: (re.findall(r"closed; model ([0-9a-f]+)", self.log(i)) or ["none"])[-1] for i in range(len(self.procs))
        }
        last = max(finalized, default=0)
        on_chain = fed.round(last).model_hash.hex()[:16] if last else "none"
        acc = fed.accounting()
        by_round = self._events_by_round(("Committed", "Revealed", "Voted", "Slashed"))
        commits = {(e["member"], r) for r, e in by_round["Committed"]}
        double = len(by_round["Committed"]) != len(commits)
        recoveries = []
        for f in self.faults:
            if f.ended is None:
                continue
            after = [t - f.ended for r, (t, p) in self.closed.items() if p == Phase.FINALIZED and t >= f.ended]
            recoveries.append(min(after) if after else None)
        closed_at = sorted(t for t, _p in self.closed.values())
        return {
            "attempted": self.rounds,
            "finalized": len(finalized),
            "failed": failed,
            "recovery_seconds": recoveries,
            "seconds": round((closed_at[-1] if closed_at else time.monotonic()) - self.started, 1),
            "closed_at": {r: round(t - self.started, 1) for r, (t, _p) in sorted(self.closed.items())},
            "exit_codes": codes,
            "double_commits": sorted(f"peer{i} round {r}" for (i, r), k in logged.items() if k > 1)
            + (["AlreadyCommitted reverted"] if "AlreadyCommitted" in text else [])
            + (["two Committed events"] if double else []),
            "tracebacks": text.count("Traceback"),
            "same_model": len(set(models.values())) == 1 and on_chain in models.values(),
            "tokens_conserved": acc.held == acc.staked + acc.pool + acc.unclaimed,
            "unverified": unverified,
            "left_out": left_out,  # updates the voters could not fetch, fetchable when verified
            "slashed": sorted(f"peer{self._index(e['member'])} round {r}" for r, e in by_round["Slashed"]),
            "slashed_as_protocol": self._slashing_as_protocol(by_round, finalized),
        }

    def _events_by_round(self, names: tuple[str, ...]) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        assert self.net is not None
        return {
            n: [(int(e["args"]["round"]), dict(e["args"])) for e in self.fed.events(n, self.net.block)] for n in names
        }

    @staticmethod
    def _slashing_as_protocol(by_round: dict[str, list[tuple[int, dict[str, Any]]]], finalized: list[int]) -> bool:
        """In every finalized round, exactly its committers that never revealed and its revealers that never
        voted were slashed (docs/protocol.md, settlement)."""

        def who(name: str, r: int) -> set[str]:
            return {str(e["member"]).lower() for k, e in by_round[name] if k == r}

        return all(
            who("Slashed", r) == (who("Committed", r) - who("Revealed", r)) | (who("Revealed", r) - who("Voted", r))
            for r in finalized
        )

    def _index(self, member: str) -> int:
        assert self.net is not None
        return [m.lower() for m in self.net.members].index(member.lower())


def _where(topo: Topology | None, host: str) -> tuple[str, list[str]]:
    """The address a host's services listen on and the argv prefix that runs them there (loopback without
    a topology)."""
    return (topo.address(host), topo.run_in(host)) if topo else ("127.0.0.1", [])


def _start_chain(root: Path, topo: Topology | None, log: Path, port: int | None = None) -> AnvilProcess:
    """Anvil mining a block a second, its chain saved in `root/chain.json` (and loaded from it, if there),
    in the topology's "chain" namespace if there is one."""
    host, prefix = _where(topo, "chain")
    return start_anvil(port, log_path=log, block_time=1, state_file=root / "chain.json", host=host, prefix=prefix)


def nothing_lost(report: dict[str, Any]) -> bool:
    """Every check of a report holds: clean exits, no double commit, one model, tokens, re-verified rounds."""
    return (
        all(c == 0 for c in report["exit_codes"])
        and not report["double_commits"]
        and report["tracebacks"] == 0
        and report["same_model"]
        and report["tokens_conserved"]
        and not report["unverified"]
        and report["slashed_as_protocol"]
    )
