"""Gas per operation, and how a round's cost grows with the federation.

Runs the same rounds on the embedded chain (eth-tester/py-evm) and on a real
anvil, side by side, for 5, 10, 25 and 50 members, and writes
bench/results/gas.md and gas.json. Gas is deterministic, so one round per size
is a measurement, not a sample.

    .venv/bin/python -m bench.gas [--sizes 5,10,25,50] [--no-anvil]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import astuple
from typing import Any

from eth_account import Account

from bench.results_file import progress, stamp, table, write
from ledger.chain import Chain, connect, embedded_chain
from ledger.client import FederationClient, proposal_id
from ledger.compile import compiler_version
from ledger.deploy import deploy_contract
from ledger.devnet import start_anvil
from ledger.spec import spec_from_dict
from ledger.types import Proposal

TARGET_PER_MEMBER = 100_000  # issue 14's target, mean commit + reveal per member at 10 to 50 members
TWO_CP = (115_000, 125_000)  # 2CP (Ethereum + IPFS) prototype, gas per trainer per round, as published
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def _gas(receipt: Any) -> int:
    return int(receipt["gasUsed"])


def measure(chain: Chain, n: int) -> dict[str, Any]:
    """Deploy a federation of `n` founders and play two rounds; returns gas per operation."""
    deployer = Account.create()
    members = [Account.create() for _ in range(n)]
    for a in [deployer, *members]:
        chain.fund(a.address, 10**19)
    spec = spec_from_dict(
        {"members": {"founders": [m.address for m in members]}, "token": {"supply": 10**7, "founder_grant": 1000}}
    )
    tok = spec.token
    token, _ = deploy_contract(chain, deployer, "RewardToken", tok["name"], tok["symbol"], 10**25, deployer.address)
    fed_address, fed_block = deploy_contract(
        chain, deployer, "Federation", token, spec.hash, spec.chain_config(), spec.founders
    )
    deploy_gas = chain.gas_used_in_block(fed_block)  # one transaction per block here
    fed = FederationClient(chain, fed_address)
    fed.fund(deployer, 10**22)
    for m in members:
        fed.token.transfer(deployer, m.address, 1000 * 10**18)
    ops: dict[str, list[int]] = {k: [] for k in ("join", "commit", "reveal", "finalize", "claim")}
    ops["deploy"] = [deploy_gas]
    for m in members:
        fed.token.approve(m, fed.address, fed.config()["stake"])
        ops["join"].append(_gas(fed.join(m)))  # the allowance is in place: join() sends the join alone

    def body(r: int) -> Proposal:
        return Proposal(bytes([r]) * 32, CID, [1000 + i for i in range(n)])

    round_totals = []
    for r in (1, 2, 3):
        # Round r's commits carry the votes on round r-1; its first reveal carries round r-1's
        # winning proposal and finalizes it (a member sends two transactions a round).
        secrets = {m.address: (os.urandom(32), os.urandom(32)) for m in members}
        vote = proposal_id(*astuple(body(r - 1))) if r > 1 else bytes(32)
        commits = [_gas(fed.commit(m, r, fed.commitment_for(r, m.address, *secrets[m.address]), vote)) for m in members]
        reveals = [
            _gas(fed.reveal(m, r, secrets[m.address][0], CID, secrets[m.address][1], body(r - 1) if i == 0 else None))
            for i, m in enumerate(members)
        ]
        round_totals.append(sum(commits) + sum(reveals))
        if r == 3:  # rounds 1 and 2 pay one-off first-use costs; report the steady state
            finalize = reveals[0] - int(statistics.median(reveals[1:] or reveals))
            ops["commit"], ops["reveal"], ops["finalize"] = commits, reveals[1:] or reveals, [finalize]
    ops["claim"] = [_gas(fed.claim(m)) for m in members[:5]]
    per_member = [c + r for c, r in zip(ops["commit"], ops["reveal"], strict=False)]
    return {
        "members": n,
        "ops": {k: {"min": min(v), "median": int(statistics.median(v)), "max": max(v)} for k, v in ops.items()},
        "per_member_median": int(statistics.median(per_member)),
        "per_member_mean": sum(ops["commit"]) // n + sum(ops["reveal"]) // len(ops["reveal"]),
        "per_member_with_finalize": round_totals[-1] // n,
        "round_total": round_totals[-1],
        "block_gas_limit": chain.block_gas_limit,
    }


def _table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    backends = list(results)
    lines = [
        "| members | "
        + " | ".join(f"{b}: {c}" for b in backends for c in ("c+r mean", "c+r median", "finalize"))
        + " | mean / 100k target | with finalize, per member | finalize / block limit |"
    ]
    lines.append("|" + "---|" * (1 + 3 * len(backends) + 3))
    for i, row in enumerate(results[backends[0]]):
        cells = []
        for b in backends:
            x = results[b][i]
            cells += [f"{x['per_member_mean']:,}", f"{x['per_member_median']:,}", f"{x['ops']['finalize']['max']:,}"]
        ratio = row["per_member_mean"] / TARGET_PER_MEMBER
        limit = row["ops"]["finalize"]["max"] / row["block_gas_limit"]
        whole = f"{row['per_member_with_finalize']:,}"
        lines.append(f"| {row['members']} | " + " | ".join(cells) + f" | {ratio:.2f} | {whole} | {limit:.3f} |")
    return lines


def _ops_table(rows: list[dict[str, Any]]) -> list[str]:
    ops = ("deploy", "join", "commit", "reveal", "finalize", "claim")
    lines = ["| members | " + " | ".join(ops) + " |", "|" + "---|" * (len(ops) + 1)]
    for row in rows:
        lines.append(f"| {row['members']} | " + " | ".join(f"{row['ops'][o]['median']:,}" for o in ops) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5,10,25,50")
    parser.add_argument("--no-anvil", action="store_true", help="embedded chain only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    total = len(sizes) * (1 if args.no_anvil else 2)
    results: dict[str, list[dict[str, Any]]] = {"eth-tester": []}
    for i, n in enumerate(sizes, 1):
        progress("gas", f"eth-tester, {n} members ({i}/{total})")
        results["eth-tester"].append(measure(embedded_chain(), n))
    if not args.no_anvil:
        anvil = start_anvil()
        try:
            results["anvil"] = []
            for i, n in enumerate(sizes, len(sizes) + 1):
                progress("gas", f"anvil, {n} members ({i}/{total})")
                results["anvil"].append(measure(connect(anvil.url), n))
        finally:
            anvil.stop()
    meta = {**stamp("web3", "py-evm"), "solc": compiler_version()}
    rows = results["eth-tester"]
    lines = [
        "# Gas per member and per round",
        "",
        f"Measured {meta['date']} on {meta['machine']}; Python {meta['python']}, solc {meta['solc']}, "
        f"web3 {meta['web3']}, py-evm {meta['py-evm']}. Produced by `make bench` (`python -m bench.gas`).",
        "",
        "Steady-state round (round 3: rounds 1 and 2 pay one-off first-write costs). A member sends two",
        "transactions a round: its commit, which carries its vote on the round before, and its reveal.",
        "`c+r` is one member's commit + reveal; the mean spreads the first vote for a proposal over all",
        "members, the median is a typical member. `finalize` is what the first reveal pays on top to",
        "finalize the round before (settle, pay by score, open the next); `with finalize` adds it, shared",
        "by all members.",
        "",
        *_table(results),
        "",
        f"Target: commit + reveal (the vote inside) <= {TARGET_PER_MEMBER:,} gas per member per round. "
        f"For comparison, the 2CP Ethereum+IPFS prototype reports about {TWO_CP[0]:,}-{TWO_CP[1]:,} gas "
        "per trainer per round (a different protocol: no vote, no on-chain scores).",
        "",
        "## Median gas per operation (eth-tester)",
        "",
        *_ops_table(rows),
        "",
        "## Per round in total, against 2CP",
        "",
        *table(
            [
                "members",
                "fedchain per round (all members, finalize included)",
                "2CP at 115k-125k per trainer",
                "ratio to 120k x members",
            ],
            [
                [
                    str(r["members"]),
                    f"{r['round_total']:,}",
                    f"{TWO_CP[0] * r['members']:,}-{TWO_CP[1] * r['members']:,}",
                    f"{r['round_total'] / (sum(TWO_CP) / 2 * r['members']):.2f}",
                ]
                for r in rows
            ],
        ),
        "",
        "fedchain's extra over 2CP per round is the vote (a proposal id in each commit) and the finalize "
        "that settles the round and pays contribution rewards on chain.",
        "",
    ]
    write("gas", lines, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
