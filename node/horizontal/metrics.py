"""What a peer daemon shows an operator: structured log lines and Prometheus metrics.

`fedchain node run --log-format json` writes one JSON object a line
(`{"time", "peer", "kind", "round", "details", "timings", "text"}`; `kind` is a
step event's kind, or `log` for the daemon's own lines: waiting, outages,
retries); the default is the readable line. `--metrics-port P` serves
Prometheus metrics (prometheus-client, in a thread) at
`http://HOST:P/metrics` (`--metrics-host`, default 127.0.0.1):

- `fedchain_events_total{kind}` (counter): the peer's step events (committed,
  revealed, voted, finalized, adopted, rejected, ...);
- `fedchain_updates_rejected_total{reason}` (counter): peers' updates it
  rejected, by reason: unavailable, malformed, mismatch (not the committed
  hash), duplicate, replays, copies, other;
- `fedchain_fetch_failures_total` (counter): updates or models it could not
  fetch (rejected as unavailable, or a model it sat a round out for);
- `fedchain_work_seconds_total{work}` (counter): seconds in train, encode,
  publish, chain, fetch, aggregate, adopt (the peer's running totals, idle
  steps' prefetching included);
- `fedchain_step_seconds` (histogram): the wall time of the steps that did
  something; `fedchain_step_failures_total` (counter): steps retried;
- `fedchain_round` (gauge): the open round; `fedchain_rounds_closed{outcome}`
  (gauge): rounds finalized and failed so far, from the chain;
- `fedchain_stake_tokens`, `fedchain_rewards_tokens{state}` (gauges): its
  stake, its rewards unclaimed and claimed, and what was slashed from it;
- `fedchain_epsilon_spent` (gauge): the differential privacy it has spent;
- `fedchain_up` (gauge): 1 while chain and store answer, 0 in an outage.

Token amounts are whole tokens (18 decimals). The chain-read gauges are
refreshed after every step that did something, and at most every `REFRESH`
seconds while the peer waits. The endpoint has no authentication:
it shows stake, rewards and epsilon, so serve it beyond 127.0.0.1 only on a
network the company trusts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ledger.client import FederationClient
from ledger.types import Phase
from node.events import StepEvent

__all__ = ["LOG_FORMATS", "REFRESH", "LogWriter", "PeerMetrics", "rejection_reason"]

LOG_FORMATS = ("text", "json")
REFRESH = 5.0  # seconds between chain reads for the gauges
_TOKEN = 10**18
_REASONS = {"unavailable", "malformed", "duplicate", "replays", "copies"}  # the rejection reasons' first words


def rejection_reason(text: str) -> str:
    """A rejection's metric label: its reason's first word, from a fixed set (never a peer's own text)."""
    first = text.split(":", 1)[0].split(" ", 1)[0]
    if first == "content":  # "content does not match its on-chain hash"
        return "mismatch"
    return first if first in _REASONS else "other"


class LogWriter:
    """One line per event or message, readable or JSON (`fmt`)."""

    def __init__(self, name: str, fmt: str, write: Callable[[str], None]) -> None:
        if fmt not in LOG_FORMATS:
            raise ValueError(f"log format {fmt!r}: expected one of {LOG_FORMATS}")
        self.name, self.fmt, self.write = name, fmt, write

    def message(self, text: str) -> None:
        self._line("log", 0, {}, {}, text)

    def event(self, event: StepEvent) -> None:
        self._line(event.kind, event.round, event.details, event.timings, event.text())

    def _line(self, kind: str, r: int, details: dict[str, Any], timings: dict[str, float], text: str) -> None:
        now = datetime.now(UTC)
        if self.fmt == "text":
            self.write(f"{now.strftime('%H:%M:%S')} {self.name}: {text}")
            return
        record = {
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "peer": self.name,
            "kind": kind,
            "round": r,
            "details": details,
            "timings": {k: round(v, 6) for k, v in timings.items()},
            "text": text,
        }
        self.write(json.dumps(record, default=str, sort_keys=True))


class PeerMetrics:
    """A peer daemon's Prometheus metrics (its own registry), fed by its events and by chain reads. Made and
    served before the peer opens (a port in use stops the daemon before it joins), then `attach`ed to it."""

    def __init__(self) -> None:
        self.fed: FederationClient | None = None
        self.address = ""
        self._epsilon: Callable[[], float] = lambda: 0.0
        self._timings: Callable[[], Mapping[str, float]] = dict
        self._worked: dict[str, float] = {}  # the peer's work totals already counted
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("fedchain_events", "The peer's step events, by kind", ["kind"], registry=r)
        self.rejected = Counter(
            "fedchain_updates_rejected", "Peers' updates this peer rejected, by reason", ["reason"], registry=r
        )
        self.fetch_failures = Counter(
            "fedchain_fetch_failures", "Updates or models this peer could not fetch", registry=r
        )
        self.work = Counter("fedchain_work_seconds", "Seconds spent per kind of work", ["work"], registry=r)
        self.step_seconds = Histogram(
            "fedchain_step_seconds",
            "Wall time of the steps that did something",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.step_failures = Counter("fedchain_step_failures", "Steps that failed and were retried", registry=r)
        self.round = Gauge("fedchain_round", "The open round", registry=r)
        self.closed = Gauge("fedchain_rounds_closed", "Rounds closed so far, by outcome", ["outcome"], registry=r)
        self.stake = Gauge("fedchain_stake_tokens", "This member's stake (tokens)", registry=r)
        self.rewards = Gauge("fedchain_rewards_tokens", "Rewards and slashing (tokens)", ["state"], registry=r)
        self.epsilon = Gauge("fedchain_epsilon_spent", "Differential privacy spent so far", registry=r)
        self.up = Gauge("fedchain_up", "1 while the chain and store answer, 0 during an outage", registry=r)
        self.up.set(1)
        for outcome in ("finalized", "failed"):
            self.closed.labels(outcome).set(0)
        self._outcomes: dict[int, str] = {}  # closed rounds seen, by round
        self._next = 1  # the first round not yet known closed
        self._refreshed = 0.0
        self._lock = threading.Lock()

    def attach(
        self,
        fed: FederationClient,
        address: str,
        epsilon: Callable[[], float],
        timings: Callable[[], Mapping[str, float]],
    ) -> None:
        """Read this member of `fed` from now on; `timings`: the peer's running work totals (seconds by kind)."""
        self.fed, self.address, self._epsilon, self._timings = fed, address, epsilon, timings

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve /metrics on `host:port` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def on_event(self, event: StepEvent, seconds: float | None = None) -> None:
        """Count one event (`seconds`: the wall time of the step that produced it)."""
        self.events.labels(event.kind).inc()
        if seconds is not None:
            self.step_seconds.observe(seconds)
        if event.kind == "rejected":
            reason = rejection_reason(str(event.details.get("reason", "")))
            self.rejected.labels(reason).inc()
            if reason == "unavailable":
                self.fetch_failures.inc()
        elif event.kind == "model-unavailable":
            self.fetch_failures.inc()

    def outage(self, down: bool) -> None:
        self.up.set(0 if down else 1)
        if down:
            self.step_failures.inc()

    def refresh(self, force: bool = False) -> None:
        """Count the peer's new work seconds; read the chain's gauges, at most every REFRESH seconds (unless
        `force`)."""
        with self._lock:
            for work, total in self._timings().items():
                self.work.labels(work).inc(max(0.0, total - self._worked.get(work, 0.0)))
                self._worked[work] = total
            if self.fed is None:
                return
            now = time.monotonic()
            if not force and now - self._refreshed < REFRESH:
                return
            self._refreshed = now
            current = self.fed.current_round()
            self.round.set(current)
            for k in range(self._next, current + 1):  # the rounds that closed since the last look
                phase = self.fed.round(k).phase
                if not phase.closed:
                    break
                self._outcomes[k] = "finalized" if phase == Phase.FINALIZED else "failed"
                self._next = k + 1
            for outcome in ("finalized", "failed"):
                self.closed.labels(outcome).set(sum(o == outcome for o in self._outcomes.values()))
            self.stake.set(self.fed.member(self.address).stake / _TOKEN)
            rewards = self.fed.rewards(self.address)
            for state, key in (("unclaimed", "credited"), ("claimed", "claimed"), ("slashed", "slashed")):
                self.rewards.labels(state).set(rewards[key] / _TOKEN)
            self.epsilon.set(self._epsilon())
