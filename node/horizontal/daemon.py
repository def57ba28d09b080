"""`fedchain node run`: one peer as a long-running process.

It checks everything once at start (spec hash against the chain, data against
the schema, keystore, RPC endpoint and chain id, IPFS API), joins if it was
admitted, then steps the round loop until told to stop. RPC and IPFS failures
(`ChainUnreachable`, `StoreError`) are waited out with backoff and said in the
log; so is a step that failed for a reason the next block may change. A
permanent error (the account is no longer a member, the contract is gone from
the chain because it was restarted without its state, a contract error that no
retry can change) stops the daemon with one line and a non-zero exit. SIGINT and SIGTERM stop
it between two steps, with its state saved.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from ledger.chain import connect
from ledger.client import FederationClient
from ledger.deploy import Deployment, open_federation
from ledger.errors import ChainUnreachable, ContractRevert, DeploymentError
from ledger.keystore import load_keystore, read_password
from ledger.spec import load_spec
from node.errors import NodeError
from node.events import StepEvent
from node.horizontal.config import PeerConfig
from node.horizontal.metrics import LogWriter, PeerMetrics
from node.horizontal.peer import Peer
from node.horizontal.spec import NodeSpec, model_hash
from node.horizontal.state import PeerState
from node.learn.data import Dataset, load_csv
from node.store import StoreError, open_store

__all__ = ["Daemon", "PermanentError", "open_company", "open_peer"]

_TRANSIENT = (ChainUnreachable, StoreError)
# The longest wait between tries while the chain or IPFS node is unreachable: a try is one request, and a
# peer that comes back (a healed partition, a restarted node) must still make the window it is in (10
# blocks or more: 15 s in the partition test).
OUTAGE_RETRY = 5.0

# Reverts no retry can change: the account is not (or no longer) a member of the federation.
_PERMANENT_REVERTS = frozenset({"NotMember", "NotAdmitted"})


def _brief(exc: Exception, limit: int = 160) -> str:
    """An error as one short line for the log: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PermanentError(NodeError):
    """The daemon cannot go on: retrying would fail the same way."""


def open_company(cfg: PeerConfig, log: Callable[[str], None]) -> tuple[FederationClient, NodeSpec, Dataset, int]:
    """The federation (spec hash checked against the chain's), the spec, the company's rows, the deploy block."""
    deployment = Deployment.load(cfg.deployment)
    spec = load_spec(cfg.spec)
    if "0x" + spec.hash.hex() != deployment.spec_hash:
        raise NodeError(f"{cfg.spec} hashes to 0x{spec.hash.hex()}, the federation's spec is {deployment.spec_hash}")
    chain = connect(cfg.rpc, deployment.chain_id)
    fed = open_federation(chain, deployment)
    if fed.spec_hash() != spec.hash:
        raise NodeError(f"the contract's spec hash 0x{fed.spec_hash().hex()} differs from {cfg.spec}'s")
    nspec = NodeSpec.from_federation(spec)
    data = load_csv(cfg.data, nspec.schema)
    log(f"{cfg.data}: {len(data)} rows, {int(data.y.sum())} positive; missing cells imputed: {data.missing or 'none'}")
    return fed, nspec, data, deployment.block


def open_peer(cfg: PeerConfig, log: Callable[[str], None]) -> tuple[Peer, FederationClient]:
    """Check the config end to end and return a ready peer (joined, if it was admitted)."""
    fed, nspec, data, block = open_company(cfg, log)
    account = load_keystore(cfg.keystore, read_password(cfg.password_file))
    state = PeerState.load(cfg.state / "state.json")
    store = open_store(cfg.ipfs)
    peer = Peer(cfg.name, account, fed, store, data, nspec, state, from_block=block)
    if peer.dp is not None:
        dp = peer.dp
        log(
            f"differential privacy: budget epsilon {dp.config.epsilon:g} at delta {dp.config.delta:g}; noise "
            f"{dp.noise:.3f}, sampling rate {dp.sample_rate:.4f}, {dp.steps} steps a round; spent so far "
            f"{peer.epsilon:.3f} in {len(state.dp_rounds)} rounds"
        )
    if peer.sealer is not None:
        auditors = len(peer.sealer.spec.auditors)
        log(
            f"sealed: updates and models in IPFS encrypted to the members and {auditors} auditor key(s); "
            f"this member's encryption key 0x{peer.sealer.key.public.hex()}"
        )
    if not fed.member(account.address).active:
        if not fed.is_admitted(account.address):
            raise NodeError(f"{account.address} is not admitted: a majority of members must approveMember it")
        fed.join(account)
        log(f"joined the federation {fed.address} as {account.address}")
    return peer, fed


@dataclass
class Daemon:
    cfg: PeerConfig
    log: Callable[[str], None]
    stop: threading.Event = field(default_factory=threading.Event)
    log_format: str = "text"  # or "json": one object a line (node.horizontal.metrics.LogWriter)
    metrics_port: int | None = None  # serve Prometheus metrics here (node.horizontal.metrics.PeerMetrics)
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self._writer = LogWriter(self.cfg.name, self.log_format, self.log)
        self._metrics: PeerMetrics | None = None

    def _say(self, text: str) -> None:
        self._writer.message(text)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._say(f"{signal.Signals(signum).name}: stopping after this step")
        self.stop.set()

    def run(self, until_round: int | None = None) -> int:
        """Step until stopped (or until round `until_round` has closed and its model is adopted)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        if self.metrics_port is not None:  # first: a port in use stops the daemon before it joins
            self._metrics = PeerMetrics()
            try:
                self._metrics.serve(self.metrics_port, self.metrics_host)
            except OSError as exc:
                raise NodeError(f"cannot serve metrics on {self.metrics_host}:{self.metrics_port}: {exc}") from None
            self._say(f"Prometheus metrics on http://{self.metrics_host}:{self.metrics_port}/metrics")
        peer, fed = open_peer(self.cfg, self._say)
        peer.on_event = self._on_event
        peer.last_round = until_round
        if self._metrics is not None:
            self._metrics.attach(fed, peer.address, lambda: peer.epsilon, lambda: dict(peer.timings))
        backoff, waiting = 0.0, ""
        outage, outage_since = "", 0.0  # the failure being waited out, said once (not at every retry)
        while not self.stop.is_set():
            try:
                started = time.monotonic()
                done = peer.step()
                spent = time.monotonic() - started
                if self._metrics is not None:  # the chain's gauges after each step that did something
                    self._metrics.refresh(force=bool(done))
                if until_round is not None and not done and fed.round(until_round).phase.closed:
                    peer.adopt_latest()
                    self._say(f"round {until_round} closed; model {model_hash(peer.params).hex()[:16]}; exiting")
                    return 0
                now = "" if done else self._waiting_for(fed)  # chain calls too: inside the retry
            except _TRANSIENT as exc:
                backoff = min(OUTAGE_RETRY, max(0.5, backoff * 2))
                if _brief(exc) != outage:
                    outage, outage_since = _brief(exc), outage_since if outage else time.monotonic()
                    self._say(f"waiting for RPC/IPFS, retrying up to every {OUTAGE_RETRY:.0f}s: {outage}")
                if self._metrics is not None:
                    self._metrics.outage(True)
                self.stop.wait(backoff)
                continue
            except DeploymentError as exc:  # the federation is gone from this endpoint
                peer.state.save()
                raise PermanentError(f"{self.cfg.name}: {exc}") from exc
            except (ContractRevert, NodeError) as exc:
                if isinstance(exc, ContractRevert) and exc.error_name in _PERMANENT_REVERTS:
                    peer.state.save()
                    raise PermanentError(f"{self.cfg.name}: {exc}") from exc
                backoff = min(30.0, max(1.0, backoff * 2))
                self._say(f"step failed, retrying in {backoff:.0f}s: {_brief(exc)}")
                if self._metrics is not None:
                    self._metrics.step_failures.inc()
                self.stop.wait(backoff)
                continue
            backoff = 0.0
            if outage:
                self._say(f"RPC/IPFS answer again after {time.monotonic() - outage_since:.0f}s")
                outage = ""
                if self._metrics is not None:
                    self._metrics.outage(False)
            if done:
                self._on_event(done, spent)
                waiting = ""
                continue
            if now != waiting:
                self._say(now)
                waiting = now
            try:  # look again at the next block, or after poll_seconds (a window can close without one)
                fed.chain.wait_for_block(self.cfg.poll_seconds, self.stop)
            except ChainUnreachable:  # the next step says so, and backs off
                self.stop.wait(self.cfg.poll_seconds)
        peer.state.save()
        self._say("stopped")
        return 0

    def _on_event(self, event: StepEvent, seconds: float | None = None) -> None:
        """An event the peer noticed, or (with `seconds`) the one its step returned: logged and counted."""
        self._writer.event(event)
        if self._metrics is not None:
            self._metrics.on_event(event, seconds)

    @staticmethod
    def _waiting_for(fed: FederationClient) -> str:
        r = fed.current_round()
        if r == 0:
            return "waiting for round 1 to open (every founder must join)"
        info = fed.round(r)
        return (
            f"waiting: round {r} in {info.phase.name.lower()} "
            f"(commits {info.commits}/{info.eligible}, reveals {info.reveals}, votes {info.votes})"
        )
