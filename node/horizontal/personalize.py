"""`fedchain node personalize`: the model this company should use, from the federation's latest one.

It fetches the newest finalized round model (by CID, checked against the hash
the chain holds), then chooses on the company's own rows among the global
model, the global model fine-tuned, its local model and blends of the two
(`node.learn.personal`), and saves the choice in the peer's state directory as
`personal.npz` (parameters) and `personal.json` (the choice, its evidence and
the round it came from). It signs nothing and writes nothing to the chain or
to the peer's round state, so it can run beside a running daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ledger.keystore import load_keystore, read_password
from node.errors import NodeError
from node.horizontal.config import PeerConfig
from node.horizontal.daemon import open_company
from node.horizontal.exchange import fetch_model
from node.horizontal.state import PeerState
from node.learn.personal import PersonalModel, choose, local_folds
from node.privacy.sealing import Sealer
from node.store import open_store

__all__ = ["personal_path", "personalize"]


def personal_path(cfg: PeerConfig) -> Path:
    """Where a peer keeps its personal model (`.npz` and `.json` beside each other)."""
    return cfg.state / "personal"


def personalize(cfg: PeerConfig, log: Callable[[str], None], local_rounds: int | None = None) -> PersonalModel:
    """Choose and save this company's model; `local_rounds` (default: the latest finalized round's
    number, at most 100) is how many rounds of local training the local candidate gets alone."""
    fed, nspec, data, block = open_company(cfg, log)
    last = fed.last_finalized()
    if last == 0:
        raise NodeError("no round has finalized yet: there is no federation model to start from")
    info = fed.round(last)
    sealer = None
    if nspec.sealing is not None:  # the model's key: from the daemon's state file
        account = load_keystore(cfg.keystore, read_password(cfg.password_file))
        known = PeerState.load(cfg.state / "state.json").model_keys
        sealer = Sealer.for_member(fed, account, nspec.sealing, known, block)
    glob = fetch_model(fed, open_store(cfg.ipfs), nspec, last, sealer)
    rounds = local_rounds or min(last, 100)
    log(f"round {last}'s model 0x{info.model_hash.hex()[:16]}; cross-validating on {len(data)} rows")
    own = local_folds(nspec.model, nspec.training, data, rounds, nspec.training.seed)
    mine = choose(nspec.model, nspec.training, glob, own)
    mine = replace(mine, extra={"round": last, "model_hash": "0x" + info.model_hash.hex(), "local_rounds": rounds})
    mine.save(personal_path(cfg))
    return mine
