"""The daemon's operator view: JSON log lines, the Prometheus metrics its events and the chain feed, and the
shipped Grafana dashboard, which asks only for metrics the daemon exports."""

from __future__ import annotations

import json
import os
import re

import pytest
from prometheus_client import generate_latest

from ledger.chain import Chain
from node.events import StepEvent
from node.horizontal.metrics import LogWriter, PeerMetrics
from tests.harness import CID, ROOT, Harness


def _samples(metrics: PeerMetrics) -> dict[str, float]:
    out = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            out[s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"] = s.value
    return out


def test_log_lines_are_readable_or_one_json_object_each() -> None:
    lines: list[str] = []
    event = StepEvent("rejected", 3, {"member": "0xab", "reason": "malformed: no header"}, {"fetch": 0.25})
    LogWriter("bank", "json", lines.append).event(event)
    LogWriter("bank", "json", lines.append).message("waiting: round 3 in reveal")
    LogWriter("bank", "text", lines.append).event(event)
    first, second = json.loads(lines[0]), json.loads(lines[1])
    assert first["kind"] == "rejected" and first["round"] == 3 and first["peer"] == "bank"
    assert first["details"]["reason"] == "malformed: no header" and first["timings"] == {"fetch": 0.25}
    assert first["text"] == "round 3: rejected 0xab's update: malformed: no header"
    assert second["kind"] == "log" and second["text"] == "waiting: round 3 in reveal"
    assert re.fullmatch(r"\d\d:\d\d:\d\d bank: round 3: rejected 0xab's update: malformed: no header", lines[2])
    with pytest.raises(ValueError, match="log format"):
        LogWriter("bank", "yaml", lines.append)


def test_metrics_count_events_and_read_the_chain(embedded: Chain) -> None:
    h = Harness.create(embedded, founders=2)
    a = h.members[0]
    for m in h.members:
        h.fed.join(m)
    work = {"train": 0.5, "chain": 0.1}  # the peer's running totals, as its Timings hold them
    metrics = PeerMetrics()
    metrics.attach(h.fed, a.address, lambda: 1.25, lambda: work)
    metrics.on_event(StepEvent("committed", 1, {}, {"train": 0.5, "chain": 0.1}), seconds=0.7)
    metrics.on_event(StepEvent("rejected", 1, {"member": "0x1", "reason": "unavailable: timed out"}))
    metrics.on_event(StepEvent("rejected", 1, {"member": "0x2", "reason": "malformed: bad"}))
    metrics.on_event(StepEvent("rejected", 1, {"member": "0x3", "reason": "content does not match its hash"}))
    metrics.on_event(StepEvent("rejected", 1, {"member": "0x4", "reason": "{peer text} anything"}))
    metrics.on_event(StepEvent("model-unavailable", 1, {"model_round": 0, "reason": "gone"}))
    metrics.outage(True)
    metrics.refresh(force=True)
    got = _samples(metrics)
    assert got["fedchain_events_total{kind=committed}"] == 1 and got["fedchain_events_total{kind=rejected}"] == 4
    reasons = {k: v for k, v in got.items() if k.startswith("fedchain_updates_rejected_total")}
    assert reasons == {
        f"fedchain_updates_rejected_total{{reason={r}}}": 1 for r in ("unavailable", "malformed", "mismatch", "other")
    }
    assert got["fedchain_fetch_failures_total{}"] == 2 and got["fedchain_step_failures_total{}"] == 1
    assert got["fedchain_step_seconds_count{}"] == 1 and got["fedchain_up{}"] == 0
    assert got["fedchain_round{}"] == 1 and got["fedchain_epsilon_spent{}"] == 1.25
    assert got["fedchain_stake_tokens{}"] == h.fed.member(a.address).stake / 10**18 > 0
    assert (
        got["fedchain_rounds_closed{outcome=finalized}"] == 0 and got["fedchain_rewards_tokens{state=unclaimed}"] == 0
    )
    # work is counted from the running totals once, however many events a step sent
    work["train"] = 2.0
    metrics.refresh()
    assert _samples(metrics)["fedchain_work_seconds_total{work=train}"] == 2.0
    # a round finalized on chain: counted once, and the reward it credited shows
    secrets = {m.address: (os.urandom(32), os.urandom(32)) for m in h.members}
    for m in h.members:
        h.fed.commit(m, 1, h.fed.commitment_for(1, m.address, *secrets[m.address]))
    for m in h.members:
        h.fed.reveal(m, 1, secrets[m.address][0], CID, secrets[m.address][1])
    for m in h.members:
        h.fed.vote(m, 1, b"\x42" * 32, CID, [3, 1])
    h.fed.finalize(a, 1)
    metrics.refresh(force=True)
    metrics.refresh(force=True)
    got = _samples(metrics)
    assert got["fedchain_rounds_closed{outcome=finalized}"] == 1 and got["fedchain_round{}"] == 2
    assert got["fedchain_rewards_tokens{state=unclaimed}"] > 0
    assert b"fedchain_events_total" in generate_latest(metrics.registry)


def test_the_grafana_dashboard_queries_only_metrics_the_daemon_exports() -> None:
    metrics = PeerMetrics()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {f.name + end for f in metrics.registry.collect() for end in suffixes[f.type]}
    dashboard = json.loads((ROOT / "docs" / "grafana" / "fedchain-peers.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bfedchain_[a-z_]+", target["expr"])
    }
    assert len(dashboard["panels"]) >= 8 and queried
    assert queried <= exported, sorted(queried - exported)
    assert {"fedchain_events_total", "fedchain_rounds_closed", "fedchain_updates_rejected_total"} <= queried
