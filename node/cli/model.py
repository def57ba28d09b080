"""Using the federation's model: `fedchain predict` and `fedchain model export`.

Both read a finalized round's model (the newest, or `--round N`), checked
against the hash on chain, from a peer config (`--config`: its deployment,
spec, endpoints, keystore and the model keys its daemon kept) or from a
deployment, a spec and an IPFS address (and, sealed, a member's keystore or an
auditor's key file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli.common import at_least, deployment_args, ipfs_for, rpc_for, say, writable_file
from node.errors import NodeError

if TYPE_CHECKING:
    from node.horizontal.finalized import Source
    from node.learn.data import Dataset

__all__ = ["add_model_commands"]


def _source(args: argparse.Namespace) -> tuple[Source, Path | None]:
    """Where the model is read from, and the company's own rows when a peer config names them."""
    from ledger.deploy import Deployment
    from ledger.keystore import load_keystore, read_password
    from ledger.spec import load_spec
    from node.horizontal.finalized import open_source

    if args.config is not None:
        from node.horizontal.config import PeerConfig
        from node.horizontal.state import PeerState
        from node.privacy.sealing import Sealer

        given = [
            f
            for f, v in (
                ("--keystore", args.keystore),
                ("--seal-key", args.seal_key),
                ("--spec", args.spec),
                ("--rpc", args.rpc),
                ("--ipfs", args.ipfs),
                ("--state-dir", args.state_dir),
            )
            if v
        ]
        if given:
            raise NodeError(f"--config names the spec, keystore and endpoints: give --config without {given[0]}")
        cfg = PeerConfig.load(args.config)
        src = open_source(Deployment.load(cfg.deployment), load_spec(cfg.spec), cfg.rpc, cfg.ipfs)
        if src.nspec.sealing is not None:
            account = load_keystore(cfg.keystore, read_password(cfg.password_file))
            known = PeerState.load(cfg.state / "state.json").model_keys  # what its daemon learned
            src.sealer = Sealer.for_member(src.fed, account, src.nspec.sealing, known, src.origin)
        return src, cfg.data
    if args.spec is None:
        raise NodeError("give --config (a peer's config), or --spec with --deployment")
    from node.cli.audit import reader_for

    deployment = Deployment.load(args.deployment)
    src = open_source(deployment, load_spec(args.spec), rpc_for(args, deployment), ipfs_for(args))
    if args.keystore or args.seal_key:
        src.sealer = reader_for(args, src.fed, src.nspec, src.origin)
    return src, None


def cmd_predict(args: argparse.Namespace) -> int:
    from node.horizontal.finalized import finalized_model
    from node.learn.prospects import score_prospects, write_scores

    to_stdout = str(args.out) == "-"
    if not to_stdout:
        writable_file(args.out, "--out")
    src, _own = _source(args)
    fm = finalized_model(src, args.round)
    scored = score_prospects(args.input, src.nspec.schema, src.nspec.model, fm.params)
    if to_stdout:
        written = write_scores(scored, sys.stdout, args.top)
    else:
        with args.out.open("w", encoding="utf-8", newline="") as fh:
            written = write_scores(scored, fh, args.top)
    fixed = ", ".join(
        f"{what} {dict(sorted(counts.items()))}"
        for what, counts in (
            ("missing cells imputed", scored.missing),
            ("unseen categories", scored.unknown_categories),
        )
        if counts
    )
    summary = (
        f"scored {len(scored.rows)} rows of {args.input} with round {fm.round}'s model 0x{fm.model_hash.hex()[:16]}"
        + (f"; {fixed}" if fixed else "")
        + ("" if to_stdout else f"; wrote {written} rows to {args.out}" + (" (the best first)" if args.top else ""))
    )
    (sys.stderr.write(summary + "\n") if to_stdout else say(summary))
    return 0


def own_metrics(data: Dataset, src: Source, params: Any) -> dict[str, Any]:
    """The model measured on the exporter's own rows: AUC, lift in the top decile, cumulative gains (None where
    a measure is undefined: rows of one class)."""
    import math

    from node.learn.marketing import yardsticks
    from node.learn.model import auc, predict

    scores = predict(src.nspec.model, params, data.x)
    area = auc(data.y, scores)
    return {
        "measured_on": Path(data.source).name,
        "note": "the exporter's own rows; if it trained on them (its peer's data), the figures are in-sample",
        "rows": len(data),
        "auc": None if math.isnan(area) else round(area, 6),
        **yardsticks(data.y, scores),
    }


def cmd_model_export(args: argparse.Namespace) -> int:
    from node.horizontal.finalized import finalized_model, model_card
    from node.learn.data import load_csv
    from node.learn.export import onnx_bytes, write_safetensors

    out: Path = args.out
    names = ("model.safetensors", "model.onnx", "model-card.json")
    if out.exists() and not out.is_dir():
        raise NodeError(f"--out {out} is a file: give a directory to write the model into")
    there = [n for n in names if (out / n).exists()]
    if there and not args.force:
        raise NodeError(f"{out} already holds {', '.join(there)}; refusing to overwrite (--force to replace)")
    src, own = _source(args)
    fm = finalized_model(src, args.round)
    rows = args.data or own
    metrics = own_metrics(load_csv(rows, src.nspec.schema), src, fm.params) if rows is not None else None
    card = model_card(src, fm, metrics)
    out.mkdir(parents=True, exist_ok=True)
    identity = {k: str(card[k]) for k in ("round", "model_hash", "model_cid")}
    partial = {n: out / f".{n}.partial" for n in names}  # all three written, then renamed: never a partial export
    try:
        write_safetensors(partial["model.safetensors"], src.nspec.model, fm.params, {**identity, "format": "pt"})
        partial["model.onnx"].write_bytes(onnx_bytes(src.nspec.model, fm.params))
        partial["model-card.json"].write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
        for name, tmp in partial.items():
            tmp.replace(out / name)
    finally:
        for tmp in partial.values():
            tmp.unlink(missing_ok=True)
    measured = "" if metrics is None else f"; on {metrics['rows']} own rows AUC {metrics['auc']}, "
    measured += "" if metrics is None else f"lift in the top decile {metrics['lift_at_10']}"
    say(f"round {fm.round}'s model 0x{fm.model_hash.hex()[:16]} written to {out}/: {', '.join(names)}{measured}")
    return 0


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="a peer's config (its deployment, spec, endpoints and keystore)")
    deployment_args(p)
    p.add_argument("--spec", type=Path, help="the federation spec (without --config)")
    p.add_argument(
        "--ipfs", help="Kubo API multiaddr, or embedded:DIR (default: the dev-net's first Kubo node, else port 5001)"
    )
    p.add_argument("--keystore", type=Path, help="a sealed federation: read it as this member (its keystore)")
    p.add_argument("--seal-key", type=Path, help="a sealed federation: read it as this auditor (its key file)")
    p.add_argument("--password-file", type=Path, help="file holding the key's password (else $FEDCHAIN_PASSWORD)")
    p.add_argument("--round", type=at_least(1), help="this finalized round's model (default: the newest)")


def add_model_commands(sub: Any) -> None:
    p = sub.add_parser("predict", help="score a CSV of prospects with the federation's model (score, rank, decile)")
    p.add_argument("--input", type=Path, required=True, help="prospects: a CSV with the spec's feature columns")
    p.add_argument("--out", type=Path, default=Path("-"), help="where to write the scored CSV (default: stdout)")
    p.add_argument("--top", type=at_least(1), help="only the K best rows, best first (a call list)")
    _source_args(p)
    p.set_defaults(func=cmd_predict)
    model = sub.add_parser("model", help="the federation's model").add_subparsers(dest="model_cmd", required=True)
    p = model.add_parser("export", help="write the model as safetensors and ONNX, with a model card")
    p.add_argument("--out", type=Path, required=True, help="the directory to write into")
    p.add_argument(
        "--data",
        type=Path,
        help="rows to measure the model on for the card (default: the config's data; none without --config)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an earlier export in --out")
    _source_args(p)
    p.set_defaults(func=cmd_model_export)
