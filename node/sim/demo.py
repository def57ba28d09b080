"""`fedchain demo`: a whole federation on the embedded default, in one process.

It splits a CSV into companies, deploys the contracts on the embedded chain,
runs one peer per company for R rounds over an embedded content store, and
compares, for every company, training alone with the federated model, next to a
centralized model trained on everyone's rows (what pooling the data would give).
Each company's rows are split 80/20 (stratified, seeded): `local_auc` and
`federated_auc` are measured on its own test rows; the top-level figures on the
whole population's test rows, where the other companies' customers live.
`federated_auc` is the model the company would use: the best, on its own
training rows (cross-validated, never its test rows), of the global model, the
global model fine-tuned locally, its local model and blends of the two
(`node.learn.personal`); `choice` names it and `global_auc` is the plain
global model beside it. The top-level `federated_auc` is the shared global
model on the whole population's test rows.

The schema (feature scaling, vocabularies) is inferred from the whole file:
a simulation shortcut. A real federation fixes it in its spec.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account

from ledger.chain import Chain, embedded_chain
from ledger.client import FederationClient
from ledger.deploy import Deployment, deploy
from ledger.spec import FederationSpec, spec_from_dict
from ledger.types import Phase, RoundInfo
from node.core.codec import IntArray
from node.core.rules import rule, tolerance
from node.errors import NodeError
from node.horizontal.peer import Peer
from node.horizontal.spec import NodeSpec
from node.learn.data import Dataset, Schema
from node.learn.marketing import yardsticks
from node.learn.model import auc, predict
from node.learn.personal import LocalFolds, choose, gain_spreads, local_folds
from node.sim.attacks import Behaviour, Liar
from node.sim.companies import Company, DemoConfig, assign_liars, assign_roles, load_companies
from node.sim.evaluate import auc_of, concat, round_aucs, train_alone
from node.store import EmbeddedStore

__all__ = [
    "ROUND_HEADER",
    "WINDOW",
    "compare",
    "demo_spec",
    "document",
    "personal_folds",
    "play_round",
    "private_row",
    "round_row",
    "run_demo",
    "summary",
]

WINDOW = 3600  # phase windows: long, the demo's peers never miss one
ROUND_HEADER = (
    f"{'round':>5}  {'status':10} {'commits':>7} {'reveals':>7} {'votes':>5}  {'model':14} {'mean AUC':>8}  secs"
)


def _split_name(cfg: DemoConfig) -> str:
    if cfg.peers is None:
        return str(cfg.split_by)
    return f"random:{cfg.peers}" if cfg.dirichlet is None else f"dirichlet:{cfg.peers}:{cfg.dirichlet}"


def _trim(attackers: int, n: int) -> float:
    return float(max(0.2, min(0.49, np.ceil(100 * attackers / n) / 100)))


def _declared_attackers(cfg: DemoConfig, n: int) -> int:
    """What the spec declares: the run's cheaters, at least one for a robust rule when `n` companies can
    withstand one (none otherwise, in an honest run). Cheaters the rule cannot withstand are refused,
    with what to change: the spec check's advice (min_peers, attackers) is not the demo's to take."""
    if cfg.rule == "fedavg":
        return 0
    cheaters = cfg.poisoners + cfg.free_riders
    attackers = max(1, cheaters)
    if tolerance(cfg.rule, n, _trim(attackers, n)) >= attackers:
        return attackers
    if cheaters == 0:
        return 0
    bigger = range(n + 1, n + 4 * cheaters + 4)
    need = next((k for k in bigger if tolerance(cfg.rule, k, _trim(cheaters, k)) >= cheaters), bigger[-1])
    raise NodeError(
        f"{cfg.rule} ({rule(cfg.rule).bound}) cannot withstand {cheaters} cheater(s) among {n} companies: "
        f"run at least {need} companies (--peers {need}), fewer --poisoners/--free-riders"
        + (", or --rule median" if cfg.rule != "median" else "")
    )


def demo_spec(cfg: DemoConfig, schema: Schema, founders: list[str], n: int) -> FederationSpec:
    """The demo federation's spec. A robust rule is declared to withstand the run's cheaters
    (see `_declared_attackers`), with min_peers the smallest round that can; FedAvg declares none."""
    window = {"commit_window": WINDOW, "reveal_window": WINDOW, "vote_window": WINDOW}
    training = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer}
    attackers = _declared_attackers(cfg, n)
    trim = _trim(attackers, n)
    min_peers = next((k for k in range(2, n + 1) if tolerance(cfg.rule, k, trim) >= attackers), n)
    return spec_from_dict(
        {
            "chain": {**window, "min_peers": min_peers},
            "members": {"founders": founders},
            "data": schema.to_spec(),
            "model": {"kind": cfg.model, "hidden": 32, "seed": cfg.seed},
            "training": {**training, "seed": cfg.seed},
            "aggregation": {"rule": cfg.rule, "trim": float(trim), "attackers": attackers},
            "scoring": {"rule": cfg.scoring},
            **({} if cfg.epsilon is None else {"privacy": _privacy(cfg)}),
            **({"sealing": {"auditors": list(cfg.auditors)}} if cfg.sealed else {}),
        }
    )


def _privacy(cfg: DemoConfig) -> dict[str, Any]:
    """The demo's [privacy]: the budget over the run's rounds, noise solved for it per company."""
    return {"epsilon": cfg.epsilon, "clip": cfg.clip, "rounds": cfg.rounds}


def run_demo(
    cfg: DemoConfig,
    out: Callable[[str], None] | None = None,
    chain: Chain | None = None,
    observe: Callable[[int, list[Peer]], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole demo; returns the JSON document, printing the live table through `out` and each
    company's step through `progress` (a terminal's status line).

    The chain is the embedded one unless `chain` is given (a development chain that can
    fund accounts and move time, e.g. anvil: the speed benchmark compares the two).
    `observe(r, peers)` sees the peers after each round r (the privacy benchmark's attacker).
    """
    say = out or (lambda _line: None)
    status = progress or (lambda _line: None)
    status(f"loading {cfg.data.name}")
    schema, companies = load_companies(cfg, say)
    roles = assign_roles(cfg, [c.name for c in companies])
    liars = assign_liars(cfg, [c.name for c in companies])
    lie = Liar(frozenset(i for i, c in enumerate(companies) if c.name in liars))
    test_all = concat([c.test for c in companies])

    chain = chain or embedded_chain()
    deployer, *accounts = [Account.create() for _ in range(len(companies) + 1)]
    for a in (deployer, *accounts):
        chain.fund(a.address, 10**21)
    spec = demo_spec(cfg, schema, [a.address for a in accounts], len(companies))
    nspec = NodeSpec.from_federation(spec)
    deployment = deploy(chain, deployer, spec)
    fed = FederationClient(chain, deployment.federation)
    say(
        f"{len(companies)} companies split by {_split_name(cfg)}; {cfg.model} with {cfg.rule}; "
        f"{cfg.rounds} rounds; federation {deployment.federation}"
    )
    with tempfile.TemporaryDirectory(prefix="fedchain-demo-") as tmp:
        store = EmbeddedStore(Path(tmp) / "store")
        peers = [
            Peer(
                c.name,
                a,
                fed,
                store,
                c.train,
                nspec,
                from_block=deployment.block,
                make_update=roles[c.name],
                make_evaluation=lie if c.name in liars else None,
            )
            for c, a in zip(companies, accounts, strict=True)
        ]
        for p in peers:
            fed.join(p.account)
            p.last_round = cfg.rounds
        say(ROUND_HEADER)
        rounds = []
        for r in range(1, cfg.rounds + 1):
            step = _round_status(status, r, cfg.rounds)
            rounds.append(_round(fed, peers, r, chain, companies, nspec, test_all, say, step))
            if observe is not None:
                observe(r, peers)
    federated = peers[0].params
    if any(any(not np.array_equal(p.params[k], federated[k]) for k in federated) for p in peers):
        raise NodeError("peers ended with different models")
    status("training the centralized yardstick (every company's rows pooled)")
    central = train_alone(nspec, concat([c.train for c in companies]), cfg.rounds)
    status("each company's own choice: local, global or a blend, on held-out folds")
    peer_rows = [
        {
            **compare(fed, p.address, c, nspec, federated, central, own, _role(roles[c.name], c.name in liars)),
            **private_row(p),
        }
        for c, p, own in zip(companies, peers, personal_folds(nspec, companies, cfg.rounds, cfg.seed), strict=True)
    ]
    doc = document(cfg, deployment, rounds, peer_rows, nspec, federated, central, test_all)
    summary(doc, say)
    return doc


def private_row(peer: Peer) -> dict[str, Any]:
    """A company's differential privacy: the epsilon it spent (at the spec's delta), its noise multiplier
    and the rounds it trained; None without [privacy]."""
    if peer.dp is None:
        return {"epsilon": None}
    return {
        "epsilon": round(peer.epsilon, 4),
        "noise_multiplier": round(peer.dp.noise, 4),
        "dp_rounds": len(peer.state.dp_rounds),
    }


def _role(behaviour: Behaviour | None, liar: bool) -> str:
    """A company's role in the demo's tables: its cheat, "liar" for an honest trainer that lies in evaluations."""
    return behaviour.role if behaviour is not None else "liar" if liar else "honest"


def personal_folds(nspec: NodeSpec, companies: list[Company], rounds: int, seed: int) -> list[LocalFolds]:
    """Each company's local candidate, cross-validated on its training rows (`node.learn.personal`)."""
    return [local_folds(nspec.model, nspec.training, c.train, rounds, seed) for c in companies]


def document(
    cfg: DemoConfig,
    deployment: Deployment,
    rounds: list[dict[str, Any]],
    peer_rows: list[dict[str, Any]],
    nspec: NodeSpec,
    federated: dict[str, IntArray],
    central: dict[str, IntArray],
    test_all: Dataset,
    **extra: Any,
) -> dict[str, Any]:
    """The demo's JSON document (the same for the embedded and the dev-net run)."""

    def mean(key: str) -> float:
        return round(float(np.nanmean([p[key] for p in peer_rows])), 4)

    paid = sum(int(p["reward"]) for p in peer_rows)
    cheaters = sum(int(p["reward"]) for p in peer_rows if p["role"] != "honest")

    return {
        "data": str(cfg.data),
        "split_by": _split_name(cfg),
        "model": cfg.model,
        "rule": cfg.rule,
        **extra,
        "federation": deployment.federation,
        "chain_id": deployment.chain_id,
        "rounds": rounds,
        "peers": peer_rows,
        "federated_auc": auc_of(nspec, federated, test_all),
        "centralized_auc": auc_of(nspec, central, test_all),
        "mean_local_auc": mean("local_auc"),
        "mean_federated_auc": mean("federated_auc"),
        "mean_global_auc": mean("global_auc"),
        "poisoners": cfg.poisoners,
        "poison": cfg.poison if cfg.poisoners else None,
        "free_riders": cfg.free_riders,
        "free_ride": cfg.free_ride if cfg.free_riders else None,
        "scoring": nspec.scoring,
        "privacy": None
        if nspec.privacy is None
        else {
            "epsilon": nspec.privacy.epsilon,
            "delta": nspec.privacy.delta,
            "clip": nspec.privacy.clip,
            "accountant": nspec.privacy.accountant,
        },
        "sealed": nspec.sealing is not None,
        "liars": cfg.liars,
        "rewards_paid": str(paid),
        "cheater_reward_share": round(cheaters / paid, 4) if paid else 0.0,
    }


def _round(
    fed: FederationClient,
    peers: list[Peer],
    r: int,
    chain: Chain,
    companies: list[Company],
    nspec: NodeSpec,
    test_all: Dataset,
    say: Callable[[str], None],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    started, asked = time.monotonic(), chain.requests.total()
    play_round(fed, peers, r, chain, progress)
    info = fed.round(r)
    for p in peers:
        p.adopt_latest()
    row = round_row(info, peers[0].params, companies, nspec, test_all, time.monotonic() - started, say)
    row["chain_requests"] = chain.requests.total() - asked  # JSON-RPC requests of all peers in the round
    return row


def round_row(
    info: RoundInfo,
    params: dict[str, IntArray],
    companies: list[Company],
    nspec: NodeSpec,
    test_all: Dataset,
    seconds: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Print a round's table row and return its JSON record."""
    aucs = round_aucs(nspec, params, companies, test_all)
    model = "0x" + info.model_hash.hex() if info.phase == Phase.FINALIZED else None
    say(
        f"{info.round:>5}  {info.phase.name.lower():10} {info.commits:>7} {info.reveals:>7} {info.votes:>5}  "
        f"{(model or '-')[:14]:14} {aucs['mean_auc']:>8.4f} {seconds:>5.1f}"
    )
    return {
        "round": info.round,
        "status": info.phase.name.lower(),
        "commits": info.commits,
        "reveals": info.reveals,
        "votes": info.votes,
        "participants": info.reveals,
        "model_hash": model,
        "model_cid": info.model_cid or None,
        **aucs,
        "seconds": round(seconds, 2),
    }


def compare(
    fed: FederationClient,
    address: str,
    c: Company,
    nspec: NodeSpec,
    federated: dict[str, IntArray],
    central: dict[str, IntArray],
    local: LocalFolds,
    role: str = "honest",
) -> dict[str, Any]:
    """A company's row: alone, the global model, what it chose to use (and why), centralized, rewards."""
    mine = choose(nspec.model, nspec.training, federated, local)
    used, alone = mine.scores(nspec.model, c.test.x), predict(nspec.model, local.model, c.test.x)
    noise = gain_spreads(c.test.y, {"local": alone, "used": used}, 0)["used"]  # NaN on one-class test rows
    rewards = fed.rewards(address)
    on_alone, on_used = yardsticks(c.test.y, alone), yardsticks(c.test.y, used)
    return {
        "name": c.name,
        "address": address,
        "role": role,
        "rows": len(c.train) + len(c.test),
        "train_rows": len(c.train),
        "test_rows": len(c.test),
        "local_auc": round(auc(c.test.y, alone), 4),
        "federated_auc": round(auc(c.test.y, used), 4),
        # marketing's yardsticks on the same test rows: the top decile's positive rate over the base rate, and
        # the share of positives in the top 10%, 20%, ... of the list (NaN on a test set with no positive)
        "lift_at_10": {"local": on_alone["lift_at_10"], "federated": on_used["lift_at_10"]},
        "gains": {"local": on_alone["gains"], "federated": on_used["gains"]},
        "test_gain_spread": round(noise, 4),  # the gain's bootstrap standard deviation on these test rows
        "global_auc": auc_of(nspec, federated, c.test),
        "choice": mine.choice,
        "personal": mine.describe(),
        "centralized_auc": auc_of(nspec, central, c.test),
        "reward": str(rewards["credited"] + rewards["claimed"]),
        "slashed": str(rewards["slashed"]),
    }


def summary(doc: dict[str, Any], say: Callable[[str], None]) -> None:
    say("")
    private = doc.get("privacy") is not None
    say(
        f"{'company':16} {'role':10} {'rows':>6} {'local AUC':>9} {'lift':>5} {'global':>7} {'uses':>11} {'AUC':>6} "
        f"{'lift':>5} {'gain':>7} {'reward':>10}" + (f" {'epsilon':>7}" if private else "")
    )
    for p in doc["peers"]:
        gain = p["federated_auc"] - p["local_auc"]
        reward = int(p["reward"]) / 1e18
        lift = {k: "-" if v is None else f"{v:.2f}" for k, v in p["lift_at_10"].items()}
        say(
            f"{p['name']:16} {p['role']:10} {p['rows']:>6} {p['local_auc']:>9.4f} {lift['local']:>5} "
            f"{p['global_auc']:>7.4f} {p['choice']:>11} {p['federated_auc']:>6.4f} {lift['federated']:>5} "
            f"{gain:>+7.4f} {reward:>10.4f}"
            + (f" {'-' if p['epsilon'] is None else format(p['epsilon'], '.3f'):>7}" if private else "")
        )
    if private:
        dp = doc["privacy"]
        say(f"differential privacy: epsilon spent per company at delta {dp['delta']:g} (budget {dp['epsilon']:g})")
    if doc["sealed"]:
        say("sealed: every update and model on IPFS was encrypted to the members (and auditors) of its round")
    if doc["poisoners"] or doc["free_riders"] or doc["liars"]:
        say(f"cheaters' share of the rewards paid: {doc['cheater_reward_share']:.1%}")
    fed_auc, central = doc["federated_auc"], doc["centralized_auc"]
    say(f"population test rows: federated AUC {fed_auc:.4f}, centralized {central:.4f} ({fed_auc / central:.1%})")
    say("lift: the top decile's positive rate over the base rate on each company's test rows (local, then used)")


def _round_status(status: Callable[[str], None], r: int, rounds: int) -> Callable[[str], None]:
    return lambda text: status(f"round {r}/{rounds}: {text}")


def play_round(
    fed: FederationClient, peers: list[Peer], r: int, chain: Chain, progress: Callable[[str], None] | None = None
) -> None:
    """Step every peer until round `r` closes, telling `progress` what each did; if a full pass does
    nothing, let the windows pass."""
    idle = 0
    while not fed.round(r).phase.closed:
        acted = False
        for p in peers:
            event = p.step()
            if event:
                acted = True
                if progress is not None:
                    progress(f"{p.name}: {event.text()}")
        if acted:
            idle = 0
            continue
        idle += 1
        if idle > 2:
            raise NodeError(f"round {r} is stuck in phase {fed.phase(r).name}")
        chain.advance_time(WINDOW)
    if fed.round(r).phase not in (Phase.FINALIZED, Phase.FAILED):
        raise NodeError(f"round {r} did not close")
