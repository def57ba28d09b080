"""Peers on separate hosts: each peer (its daemon and its Kubo node) and the chain node in their own
network namespace, joined by a bridge; peers cut off from everyone mid-round, then healed.

Four founders. One peer is partitioned as soon as a round's commit phase opens, another once a later
round enters its reveal phase, a third once a later one enters its vote; each is healed when its round
has closed. Each of those rounds must close at its deadlines, finalized by the three others (two thirds
of four); exactly the committers that never revealed and the revealers that never voted are slashed, as
docs/protocol.md says; once healed, every peer takes part again (all four reveal in the last round); and
nothing is lost (node/sim/faults.py: no double commit, every daemon on the chain's model, tokens
conserved, every finalized round re-verified).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.types import MemberStatus, Phase
from node.sim.faults import FaultNet, nothing_lost

pytestmark = [pytest.mark.anvil, pytest.mark.kubo, pytest.mark.netns]

WINDOW = 15


def test_peers_partitioned_mid_commit_mid_reveal_and_mid_vote_are_slashed_as_the_protocol_says_and_rejoin(
    tmp_path: Path, sample_csv: Path
) -> None:
    # (peer, phase of its round to cut it in); each round the first to open after the last one healed
    cuts = [(0, Phase.COMMIT), (1, Phase.REVEAL), (2, Phase.VOTE)]
    last = 11
    faulty: list[int] = []
    with FaultNet.start(tmp_path, sample_csv, 4, last, netns=True, window=WINDOW) as run:
        r = 2
        for peer, phase in cuts:
            run.wait_until(f"round {r} in its {phase.name.lower()}", lambda r=r, p=phase: run.fed.phase(r) == p)
            with run.fault(f"peer{peer} partitioned in round {r}'s {phase.name.lower()}"):
                run.partition(peer)
                assert run.wait_closed(r, 4 * WINDOW + 60) == Phase.FINALIZED, run.report()
                run.heal(peer)
            faulty.append(r)
            r = run.fed.current_round() + 1
        assert r <= last - 1, f"the faults took rounds up to {r}: raise `last`"
        codes = run.wait_done(8 * WINDOW + 180)
        report = run.report()
        fed, members = run.fed, run.fed.members()
        infos = [fed.round(k) for k in faulty]
        # what each cut peer did in its round, from the chain's events (statusOf forgets older rounds)
        did = {
            name: {(int(e["args"]["round"]), str(e["args"]["member"])) for e in fed.events(name, run.net.block)}
            for name in ("Committed", "Voted", "Slashed")
        }
        cut = [
            {name for name, seen in did.items() if (k, run.net.members[peer]) in seen}
            for k, (peer, _phase) in zip(faulty, cuts, strict=True)
        ]
        final = [fed.status(last, m) for m in members]
    assert codes == [0, 0, 0, 0], report
    for info in infos:  # closed at its deadlines (commit, reveal and vote windows at most)
        assert info.phase_at - info.opened_at <= 3 * WINDOW + 10, info
    # the cuts took effect: cut in the commit or reveal phase, a peer never voted (it was slashed if it had
    # committed, or took no part); cut in the vote, it had voted or was slashed for not voting
    assert cut[0] in (set(), {"Committed", "Slashed"}) and cut[1] == {"Committed", "Slashed"}, cut
    assert cut[2] in ({"Committed", "Voted"}, {"Committed", "Slashed"}), cut
    # slashed where the protocol says, and nowhere else (checked from the chain's events, every finalized round)
    assert report["slashed_as_protocol"], report
    # healed, each takes part again: the last round has all four revealing
    assert all(s in (MemberStatus.REVEALED, MemberStatus.VOTED) for s in final), (final, report)
    assert nothing_lost(report), json.dumps(report)
