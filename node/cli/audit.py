"""`fedchain audit`: the audit trail rebuilt from events, and a round re-run from public data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli.common import (
    at_least,
    deployment_args,
    ipfs_for,
    open_deployment,
    rounds_text,
    rpc_for,
    say,
    short,
    tokens,
    why_unpaid,
)
from node.errors import NodeError

if TYPE_CHECKING:
    from ledger.client import FederationClient
    from node.horizontal.spec import NodeSpec
    from node.privacy.sealing import Sealer

__all__ = ["add_audit_commands"]


def _unpaid(r: dict[str, Any]) -> bool:
    """A finalized round in which no score was positive: it credited nobody."""
    return r["status"] == "finalized" and not r["rewards"]


def _round_line(r: dict[str, Any]) -> str:
    status = r["status"] if r["status"] != "open" else f"open:{r['phase'].lower()}"
    if r["fail_reason"]:
        status += f" ({r['fail_reason']})"
    if _unpaid(r):
        status += " (unpaid)"
    return (
        f"{r['round']:>5}  {status:28} {len(r['commits']):>7} {len(r['reveals']):>7} {len(r['votes']):>5}  "
        f"{short(r['model_hash']):13} {short(r['model_cid'], 16):19} {tokens(r['reward_total']):>10} "
        f"{tokens(r['slashed_total']):>10}  {r['opened'].get('block', '-'):>6} "
        f"{(r['closed'] or {}).get('block', '-'):>6}"
    )


def cmd_audit_rounds(args: argparse.Namespace) -> int:
    from ledger.audit import read_audit

    _, federation, deployment = open_deployment(args)
    trail = read_audit(federation, deployment.block).to_json()
    if args.json:
        say(json.dumps(trail, indent=2))
        return 0
    say(f"federation {trail['federation']} on chain {trail['chain_id']}, {len(trail['members'])} members")
    say(
        f"{'round':>5}  {'status':28} {'commits':>7} {'reveals':>7} {'votes':>5}  {'model':13} {'cid':19} "
        f"{'rewards':>10} {'slashed':>10}  {'opened':>6} {'closed':>6}"
    )
    for r in trail["rounds"]:
        say(_round_line(r))
    unpaid = [r["round"] for r in trail["rounds"] if _unpaid(r)]
    if unpaid:
        say(f"unpaid: rounds {rounds_text(unpaid)} scored every update 0; {why_unpaid()}")
    return 0


def _member_rows(rec: dict[str, Any], members: list[str]) -> list[str]:
    by = {k: {x["member"]: x for x in rec[k]} for k in ("commits", "reveals", "votes", "rewards", "slashes")}
    winner = next((p for p in rec["proposals"] if p["proposal"] == rec["winner"]), None)
    rows = []
    for m in members[: rec["member_count"]]:
        reveal, vote = by["reveals"].get(m), by["votes"].get(m)
        score = winner["scores"].get(m, 0) if winner else "-"
        commit = by["commits"].get(m)
        committed = "no" if commit is None else f"eps {commit['epsilon']:g}" if "epsilon" in commit else "yes"
        rows.append(
            f"{m}  {committed:9} {short(reveal['content_hash']) if reveal else 'no':13} "
            f"{short(vote['proposal']) if vote else 'no':13} {score!s:>8} "
            f"{tokens(by['rewards'][m]['amount']) if m in by['rewards'] else '-':>10} "
            f"{tokens(by['slashes'][m]['amount']) if m in by['slashes'] else '-':>10}"
        )
    return rows


def cmd_audit_round(args: argparse.Namespace) -> int:
    from ledger.audit import read_audit

    _, federation, deployment = open_deployment(args)
    trail = read_audit(federation, deployment.block)
    rec = trail.rounds.get(args.round)
    if rec is None:
        raise NodeError(f"round {args.round} has not opened (rounds so far: {len(trail.rounds)})")
    doc = rec.to_json()
    if args.json:
        say(json.dumps(doc, indent=2))
        return 0
    say(
        f"round {doc['round']}: {doc['status']} (phase {doc['phase']})"
        + (f", {doc['fail_reason']}" if doc["fail_reason"] else "")
    )
    say(f"model {doc['model_hash'] or '-'}  cid {doc['model_cid'] or '-'}")
    say(f"rewards {tokens(doc['reward_total'])}, slashed {tokens(doc['slashed_total'])}")
    if _unpaid(doc):
        say(f"unpaid: every score was 0; {why_unpaid()}")
    say(f"{'member':42}  {'committed':9} {'revealed':13} {'voted':13} {'score':>8} {'reward':>10} {'slashed':>10}")
    for row in _member_rows(doc, trail.members):
        say(row)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ledger.chain import connect
    from ledger.deploy import Deployment, open_federation
    from ledger.spec import load_spec
    from node.horizontal.spec import NodeSpec
    from node.horizontal.verify import verify_round
    from node.store import open_store

    deployment = Deployment.load(args.deployment)
    spec = load_spec(args.spec)
    chain = connect(rpc_for(args, deployment), deployment.chain_id)
    fed = open_federation(chain, deployment)
    if fed.spec_hash() != spec.hash:
        raise NodeError(f"{args.spec} is not this federation's spec (hash 0x{spec.hash.hex()})")
    store = open_store(ipfs_for(args))
    nspec = NodeSpec.from_federation(spec)
    sealer = reader_for(args, fed, nspec, deployment.block) if args.keystore or args.seal_key else None
    verdict = verify_round(fed, store, nspec, args.round, deployment.block, sealer)
    for line in verdict.lines:
        say(line)
    if not verdict.ok:
        first = next(line for line in verdict.lines if line.startswith("MISMATCH"))
        sys.stderr.write(f"fedchain: round {args.round} does not verify: {first.removeprefix('MISMATCH: ')}\n")
        return 1
    say(f"round {args.round} verifies")
    if verdict.left_out:
        sys.stderr.write(
            f"fedchain: warning: round {args.round}'s voters left out the update of {', '.join(verdict.left_out)}, "
            "which can be fetched now (unavailable to them, or withheld)\n"
        )
    return 0


def reader_for(args: argparse.Namespace, fed: FederationClient, nspec: NodeSpec, origin: int) -> Sealer:
    """Who re-runs a sealed round: a member (its keystore) or an auditor (its key file), checked against the
    chain and the spec."""
    from ledger.keystore import load_keystore, read_password
    from node.privacy.seal import SealKey
    from node.privacy.sealing import Sealer, auditor_address

    if nspec.sealing is None:
        raise NodeError("this federation's spec has no [sealing]: its updates are public, no key is needed")
    if args.keystore and args.seal_key:
        raise NodeError("give --keystore (a member) or --seal-key (an auditor), not both")
    password = read_password(args.password_file)
    if args.seal_key:
        key = SealKey.load(args.seal_key, password)
        if key.public not in nspec.sealing.auditors:
            raise NodeError(f"{args.seal_key}: its public key 0x{key.public.hex()} is not an auditor of the spec")
        return Sealer(fed, auditor_address(key.public), key, nspec.sealing, origin=origin)
    member = Sealer.for_member(fed, load_keystore(args.keystore, password), nspec.sealing, origin=origin)
    registered = fed.encryption_keys().get(member.me)
    if registered is None or registered[0] != member.key.public:
        raise NodeError(f"{member.me} has no encryption key registered in this federation: nothing is sealed to it")
    return member


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    from ledger.keystore import read_password
    from node.privacy.seal import SealKey

    if args.out.exists():
        raise NodeError(f"{args.out} exists: not overwritten (a lost auditor key cannot open what was sealed to it)")
    key = SealKey.generate()
    key.save(args.out, read_password(args.password_file))
    say(f"auditor key written to {args.out}; list its public key in the spec's [sealing] auditors:")
    say(f"0x{key.public.hex()}")
    return 0


# -- parser -------------------------------------------------------------------


def add_audit_commands(sub: Any) -> None:
    """The one `audit` group: rounds, round, verify."""
    audit = sub.add_parser("audit", help="the audit trail, from events").add_subparsers(dest="audit_cmd", required=True)
    p = audit.add_parser("rounds", help="every round")
    deployment_args(p)
    p.add_argument("--json", action="store_true", help="print the fedchain.audit/1 JSON document")
    p.set_defaults(func=cmd_audit_rounds)
    p = audit.add_parser("round", help="one round, member by member")
    p.add_argument("round", type=at_least(1), help="the round number")
    deployment_args(p)
    p.add_argument("--json", action="store_true", help="print the round's fedchain.audit/1 JSON record")
    p.set_defaults(func=cmd_audit_round)
    p = audit.add_parser("verify", help="refetch a finalized round's updates, re-aggregate, compare with the chain")
    p.add_argument("--round", type=at_least(1), required=True, help="the finalized round to re-run")
    deployment_args(p)
    p.add_argument("--spec", type=Path, required=True, help="the federation spec")
    p.add_argument(
        "--ipfs", help="Kubo API multiaddr, or embedded:DIR (default: the dev-net's first Kubo node, else port 5001)"
    )
    p.add_argument("--keystore", type=Path, help="a sealed federation: re-run it as this member (its keystore)")
    p.add_argument("--seal-key", type=Path, help="a sealed federation: re-run it as this auditor (its key file)")
    p.add_argument("--password-file", type=Path, help="file holding the key's password (else $FEDCHAIN_PASSWORD)")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("keygen", help="create an auditor's key for a sealed federation's [sealing] auditors")
    p.add_argument("--out", type=Path, required=True, help="where to write the key (PKCS#8, password-encrypted)")
    p.add_argument("--password-file", type=Path, help="file holding the key's password (else $FEDCHAIN_PASSWORD)")
    p.set_defaults(func=cmd_audit_keygen)
