"""A small driver for federations in tests: deploy, join, and play rounds."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.chain import Chain
from ledger.client import FederationClient, TokenClient
from ledger.deploy import Deployment, deploy
from ledger.spec import FederationSpec, spec_from_dict
from ledger.types import Phase, Proposal

ETHER = 10**18
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def funded(chain: Chain, n: int) -> list[LocalAccount]:
    accounts = [Account.create() for _ in range(n)]
    for a in accounts:
        chain.fund(a.address, 10 * ETHER)
    return accounts


@dataclass
class Harness:
    chain: Chain
    spec: FederationSpec
    deployer: LocalAccount
    members: list[LocalAccount]
    deployment: Deployment
    fed: FederationClient
    secrets: dict[tuple[int, str], tuple[bytes, bytes]] = field(default_factory=dict)

    @classmethod
    def create(cls, chain: Chain, founders: int = 4, **chain_params: Any) -> Harness:
        accounts = funded(chain, founders + 1)
        deployer, members = accounts[0], accounts[1:]
        params = {"commit_window": 100, "reveal_window": 100, "vote_window": 100, "min_peers": 2, **chain_params}
        spec = spec_from_dict(
            {"chain": params, "members": {"founders": [m.address for m in members]}, "token": {"supply": 10**6}}
        )
        deployment = deploy(chain, deployer, spec)
        return cls(chain, spec, deployer, members, deployment, FederationClient(chain, deployment.federation))

    @property
    def token(self) -> TokenClient:
        return self.fed.token

    @property
    def round(self) -> int:
        return self.fed.current_round()

    def join_all(self) -> None:
        for m in self.members:
            self.fed.join(m)

    def commit(
        self, member: LocalAccount, round_id: int | None = None, content: bytes | None = None, vote: bytes = bytes(32)
    ) -> Any:
        """Commit to a fresh random content (and, with `vote`, vote for it on the round before)."""
        r = self.round if round_id is None else round_id
        content_hash, salt = content or os.urandom(32), os.urandom(32)
        receipt = self.fed.commit(member, r, self.fed.commitment_for(r, member.address, content_hash, salt), vote)
        self.secrets[(r, member.address)] = (content_hash, salt)  # only once the commit landed
        return receipt

    def reveal(self, member: LocalAccount, round_id: int | None = None, previous: Proposal | None = None) -> Any:
        """Reveal (and, with `previous`, finalize the round before on it if it can be)."""
        r = self.round if round_id is None else round_id
        content_hash, salt = self.secrets[(r, member.address)]
        return self.fed.reveal(member, r, content_hash, CID, salt, previous)

    def scores(self, by: dict[str, int] | None = None, default: int = 1000, round_id: int | None = None) -> list[int]:
        """One score per listed member of round `round_id` (default: the current round; join order)."""
        n = self.fed.round(self.round if round_id is None else round_id).member_count
        listed = self.fed.members()[:n]
        by = by or {}
        return [by.get(a, default) for a in listed]

    def play(
        self,
        committers: Sequence[LocalAccount] | None = None,
        revealers: Sequence[LocalAccount] | None = None,
        scores: Sequence[int] | None = None,
        model_hash: bytes = b"\x11" * 32,
    ) -> int:
        """Commit, reveal, vote and finalize one round; returns its id."""
        r = self.round
        committers = list(self.members if committers is None else committers)
        revealers = list(committers if revealers is None else revealers)
        for m in committers:
            self.commit(m, r)
        if self.fed.round(r).phase == Phase.COMMIT:
            self.chain.advance_time(self.fed.config()["commit_window"])
        for m in revealers:
            self.reveal(m, r)
        if self.fed.round(r).phase == Phase.REVEAL:
            self.chain.advance_time(self.fed.config()["reveal_window"])
        vector = list(scores) if scores is not None else self.scores(round_id=r)
        for m in revealers:
            self.fed.vote(m, r, model_hash, CID, vector)
        self.fed.finalize(revealers[0], r)
        return r


ROOT = Path(__file__).resolve().parent.parent


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m node.cli` child: this checkout's packages first on its path
    (an editable install may point at another checkout, e.g. from a git worktree), plus `extra`."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_cli(
    *args: str, cwd: Path | None = None, password: str = "pw", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`fedchain ARGS` as a user runs it (a subprocess), with the keystore password in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        cwd=cwd,
        env=cli_env(FEDCHAIN_PASSWORD=password),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_cli(
    *args: str, log: Path, cwd: Path | None = None, password: str = "pw", threads: int = 1
) -> subprocess.Popen[bytes]:
    """`fedchain ARGS` in the background, in its own process group, output to `log`."""
    env = cli_env(FEDCHAIN_PASSWORD=password, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return subprocess.Popen(
        [sys.executable, "-m", "node.cli", *args],
        cwd=cwd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
