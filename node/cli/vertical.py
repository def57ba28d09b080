"""`fedchain vertical part|spec|deploy|run|score`: a cross-domain (vertical) task, from each party's CSV to
scored prospects.

1. Each party writes its part of the task spec from its own CSV (`part`: its columns' encoding, its account).
2. The owner merges the parts into the task spec (`spec`) and deploys the task contract (`deploy`).
3. Every member runs its daemon (`run`) until the task is over; a party with `--serve` stays on to answer
   the owner's scoring requests.
4. The owner scores a prospect list with the trained model (`score`), asking the parties that are online.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from node.cli.common import LOCAL_RPC, at_least, positive_float
from node.vertical.limits import FALLBACKS, MAX_QUERY

__all__ = ["add_vertical_commands"]


def cmd_vertical_part(args: argparse.Namespace) -> int:
    from ledger.keystore import keystore_address
    from node.vertical.spec import party_part

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    address = keystore_address(args.keystore)
    part = party_part(args.data, args.name, address, args.id, columns, args.target, args.positive)
    for warning in part.pop("warnings"):
        sys.stderr.write(f"fedchain: warning: {warning}\n")
    _write_json(args.out, part)
    role = "owner (labels: " + str(args.target) + ")" if args.target else "feature party"
    sys.stdout.write(f"wrote {args.out}: {args.name}, {role}, columns {', '.join(part['columns'])}\n")
    return 0


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    import json

    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _read_json(path: Path) -> Any:
    import json

    from node.errors import NodeError

    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NodeError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise NodeError(f"{path}: not JSON ({exc})") from None


def cmd_vertical_spec(args: argparse.Namespace) -> int:
    from node.vertical.spec import TermsSpec, spec_from_parts
    from node.vertical.split import SplitSpec

    table = {"kind": args.model, "epochs": args.epochs, "seed": args.seed, "fallback": args.fallback}
    model = SplitSpec.from_spec(table)
    terms = TermsSpec(args.bounty, args.stake, args.min_intersection, args.window, args.slash, args.token)
    spec = spec_from_parts(_read_json(args.owner), [_read_json(p) for p in args.party], model, terms)
    spec.save(args.out)
    sys.stdout.write(f"wrote {args.out}: spec hash 0x{spec.hash.hex()}\n")
    return 0


def cmd_vertical_deploy(args: argparse.Namespace) -> int:
    from ledger.chain import connect
    from ledger.keystore import load_keystore, read_password
    from ledger.vertical import deploy_task
    from node.errors import NodeError
    from node.vertical.spec import TaskSpec

    spec = TaskSpec.load(args.spec)
    owner = load_keystore(args.keystore, read_password(args.password_file))
    if owner.address != spec.owner.address:
        raise NodeError(f"{args.keystore} holds {owner.address}, not the task owner {spec.owner.address}")
    if not spec.terms.token:
        raise NodeError(f"{args.spec} names no token: make it with `fedchain vertical spec --token ADDRESS`")
    chain = connect(args.rpc)
    task, block = deploy_task(
        chain,
        owner,
        spec.terms.token,
        spec.hash,
        [m.address for m in spec.parties],
        spec.terms.on_chain(spec.model.epochs),
    )
    doc = {
        "task": task.address,
        "block": block,
        "chain_id": chain.chain_id,
        "rpc_url": args.rpc,
        "token": spec.terms.token,
        "spec_hash": "0x" + spec.hash.hex(),
    }
    _write_json(args.out, doc)
    sys.stdout.write(f"task {task.address} deployed in block {block}; wrote {args.out}\n")
    return 0


def _member_config(args: argparse.Namespace, **extra: Any) -> Any:
    from node.errors import NodeError
    from node.vertical.daemon import MemberConfig

    deployment = _read_json(args.deployment) if args.deployment else {}
    task = args.task or deployment.get("task")
    if not task:
        raise NodeError("give --deployment FILE (from `fedchain vertical deploy`) or --task ADDRESS")
    return MemberConfig(
        spec=args.spec,
        task=str(task),
        name=args.name,
        data=args.data,
        keystore=args.keystore,
        rpc=args.rpc or deployment.get("rpc_url") or LOCAL_RPC,
        ipfs=args.ipfs,
        password_file=args.password_file,
        seal_key=args.seal_key,
        from_block=args.from_block if args.from_block is not None else int(deployment.get("block", 0)),
        poll_seconds=args.poll,
        model=args.model,
        state=args.state,
        **extra,
    )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        sys.stdout.write(f"{signal.Signals(signum).name}: stopping after this step\n")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    return stop


def _log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cmd_vertical_run(args: argparse.Namespace) -> int:
    from node.vertical.daemon import run_member

    cfg = _member_config(args, sample_seed=args.sample_seed, serve=args.serve, max_query=args.max_query)
    return run_member(cfg, _log, _stop_on_signals(), result=args.result)


def cmd_vertical_score(args: argparse.Namespace) -> int:
    from node.vertical.daemon import open_scorer
    from node.vertical.scoring import check_writable, write_scores

    check_writable(args.out)
    cfg = _member_config(args)
    scorer = open_scorer(cfg, args.data)
    scored = scorer.run(args.wait, _log, _stop_on_signals(), poll=args.poll)
    write_scores(args.out, scorer.spec.id_column, scored)
    for line in scored.lines():
        _log(line)
    _log(f"wrote {args.out}: {scorer.spec.id_column}, score, rank, missing (parties without an embedding)")
    return 0


def add_vertical_commands(sub: Any) -> None:
    group = sub.add_parser("vertical", help="cross-domain federation: parties with different columns")
    vsub = group.add_subparsers(dest="vertical_cmd", required=True)
    p = vsub.add_parser("part", help="write this party's part of a task spec from its own CSV")
    p.add_argument("--data", type=Path, required=True, help="this party's CSV: an id column and its columns")
    p.add_argument("--name", required=True, help="this party's name in the task")
    p.add_argument("--id", required=True, help="the column that identifies a customer (the same for every party)")
    p.add_argument("--keystore", type=Path, required=True, help="the party's account keystore (its address is read)")
    p.add_argument("--columns", help="the columns it brings, comma separated (default: all but the id and target)")
    p.add_argument("--target", help="(the task owner) the label column")
    p.add_argument("--positive", help="(the task owner) the label value that counts as positive")
    p.add_argument("--out", type=Path, required=True, help="where to write the part (JSON)")
    p.set_defaults(func=cmd_vertical_part)
    p = vsub.add_parser("spec", help="merge the owner's part and the parties' into the task spec")
    p.add_argument("--owner", type=Path, required=True, help="the owner's part (made with --target)")
    p.add_argument("--party", type=Path, action="append", required=True, help="a feature party's part (repeat)")
    p.add_argument("--model", choices=("logreg", "mlp"), default="logreg", help="the model family (default logreg)")
    p.add_argument(
        "--fallback",
        choices=FALLBACKS,
        default="mean",
        help="scoring a prospect a party does not hold, or with the party offline: 'mean' uses the party's "
        "mean training embedding, 'none' leaves the prospect unscored (default mean)",
    )
    p.add_argument("--epochs", type=at_least(1), default=10, help="training epochs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="the task seed: initial weights, splits, batches")
    p.add_argument("--bounty", type=positive_float, default=900, help="tokens the owner escrows (default 900)")
    p.add_argument("--stake", type=positive_float, default=100, help="tokens each party stakes (default 100)")
    p.add_argument("--min-intersection", type=at_least(1), default=100, help="the fewest shared customers to train on")
    p.add_argument("--window", type=at_least(1), default=3600, help="seconds a member may be silent (default 3600)")
    p.add_argument("--slash", type=positive_float, default=0.5, help="the share of its stake a silent party loses")
    p.add_argument("--token", required=True, help="the ERC-20 the bounty and stakes are paid in (its address)")
    p.add_argument("--out", type=Path, default=Path("task.json"), help="where to write the spec (default task.json)")
    p.set_defaults(func=cmd_vertical_spec)
    p = vsub.add_parser("deploy", help="(the owner) deploy the task contract for a spec")
    p.add_argument("--spec", type=Path, default=Path("task.json"), help="the task spec (default task.json)")
    p.add_argument("--keystore", type=Path, required=True, help="the owner's account keystore")
    p.add_argument("--password-file", type=Path, help="file holding the keystore password (else $FEDCHAIN_PASSWORD)")
    p.add_argument("--rpc", default=LOCAL_RPC, help=f"JSON-RPC URL (default {LOCAL_RPC})")
    p.add_argument("--out", type=Path, default=Path("task-deployment.json"), help="where to write the deployment")
    p.set_defaults(func=cmd_vertical_deploy)
    p = vsub.add_parser("run", help="run one member of a vertical task until the task is over")
    _member_options(p, "this member's CSV: the id column and its columns")
    p.add_argument(
        "--sample-seed",
        type=int,
        help="(owner, demos and tests only) derive the sample ids from this seed instead of at random, "
        "so two runs train on the same batches",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="(a feature party) once the task is paid, stay on and answer the owner's scoring requests",
    )
    p.add_argument(
        "--max-query",
        type=at_least(1),
        default=MAX_QUERY,
        help=f"(a feature party) the most prospects it scores in one request (default {MAX_QUERY:,})",
    )
    p.add_argument("--result", type=Path, help="write what this member measured (JSON) here at the end")
    p.set_defaults(func=cmd_vertical_run)
    p = vsub.add_parser("score", help="(the owner) score prospects with the task's model, asking the parties online")
    _member_options(p, "the prospects: the id column and the owner's columns (other columns are ignored)")
    p.add_argument(
        "--wait",
        type=positive_float,
        default=120.0,
        help="seconds to wait for the parties; one that has not answered by then is offline "
        "and its embedding is the spec's fallback (default 120)",
    )
    p.add_argument("--out", type=Path, default=Path("scored.csv"), help="the scored CSV (default scored.csv)")
    p.set_defaults(func=cmd_vertical_score)


def _member_options(p: argparse.ArgumentParser, data_help: str) -> None:
    """The options that say who a member is, in which task, and where its chain, IPFS node and files are."""
    p.add_argument("--spec", type=Path, required=True, help="the task spec (JSON; its hash must match the task's)")
    p.add_argument("--deployment", type=Path, help="the task's deployment file (from `fedchain vertical deploy`)")
    p.add_argument("--task", help="the VerticalTask contract's address (default: the deployment's)")
    p.add_argument("--name", required=True, help="this member's name in the task spec")
    p.add_argument("--data", type=Path, required=True, help=data_help)
    p.add_argument("--keystore", type=Path, required=True, help="encrypted JSON keystore of the member's account")
    p.add_argument("--password-file", type=Path, help="file holding the keystore password (else $FEDCHAIN_PASSWORD)")
    p.add_argument(
        "--seal-key",
        type=Path,
        help="the member's X25519 key for sealed messages, encrypted with the same password "
        "(default: the keystore's path with .seal.pem; created on first run)",
    )
    p.add_argument(
        "--model",
        type=Path,
        help="where the member keeps its trained part of the model for scoring "
        "(default: beside the keystore, KEYSTORE.TASK.model.npz)",
    )
    p.add_argument(
        "--state",
        type=Path,
        help="where the member keeps its working state, encrypted under its account key, to go on after a restart "
        "(default: beside the keystore, KEYSTORE.TASK.state; deleted once the task is paid out)",
    )
    p.add_argument("--rpc", help=f"JSON-RPC URL (default: the deployment's, else {LOCAL_RPC})")
    p.add_argument("--ipfs", required=True, help="Kubo API multiaddr, or embedded:DIR")
    p.add_argument(
        "--from-block", type=at_least(0), help="the block the task was deployed in (default: the deployment's)"
    )
    p.add_argument(
        "--poll", type=positive_float, default=1.0, help="the longest wait in seconds between looks at the chain"
    )
