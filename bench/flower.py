"""Flower FedAvg on the same companies, model, training code, local epochs and rounds as fedchain.

The yardstick: a central Flower server (`flwr` 1.x's `start_server`, gRPC on
localhost) and one Flower client per company, each a thread in this process
(as the peers are in `bench.overhead`). A client trains with fedchain's own
`node.learn.model.train` (same torch model, optimizer, batch size, epochs and
per-round seed) from the parameters the server sends, and returns them with
its row count; the server runs Flower's stock `FedAvg` (weighted by rows, in
floating point). Nothing here touches a chain or IPFS.

flwr is the `bench` extra and matplotlib a dependency, which `make setup` installs (fedchain
itself never imports flwr). Without them this module says so and stops.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.results_file import process_cpu
from node.core.codec import IntArray, from_fixed, to_fixed
from node.horizontal.spec import NodeSpec
from node.learn.model import train
from node.sim.companies import Company, DemoConfig, load_companies
from node.sim.demo import demo_spec

try:
    from flwr.common import FitRes, Parameters, Scalar, ndarrays_to_parameters
    from flwr.compat.client.app import start_client
    from flwr.compat.client.numpy_client import NumPyClient
    from flwr.server import ServerConfig, start_server
    from flwr.server.client_manager import ClientManager
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.strategy import FedAvg
except ImportError as exc:  # fail loudly: a benchmark without its yardstick is no benchmark
    raise SystemExit(f"bench: Flower is missing ({exc}); run `make setup`, which installs the `bench` extra") from exc

__all__ = ["FlowerRun", "companies_and_spec", "run_flower"]

Evaluate = Callable[[int, dict[str, IntArray]], dict[str, float]]


@dataclass
class FlowerRun:
    rounds: list[dict[str, Any]] = field(default_factory=list)  # round, seconds, train seconds, metrics
    params: dict[str, IntArray] = field(default_factory=dict)  # the final global model, as fixed point


ROUND_TIMEOUT = 600.0  # a client that dies fails its round instead of hanging the benchmark


def companies_and_spec(cfg: DemoConfig) -> tuple[list[Company], NodeSpec]:
    """The demo's companies for `cfg` and the spec its federation would run (founders are placeholders:
    nothing here touches a chain)."""
    schema, companies = load_companies(cfg)
    founders = [f"0x{i + 1:040x}" for i in range(len(companies))]
    return companies, NodeSpec.from_federation(demo_spec(cfg, schema, founders, len(companies)))


def _wait_listening(address: str, timeout: float = 60.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Client(NumPyClient):  # type: ignore[misc]
    def __init__(self, company: Company, nspec: NodeSpec, clock: dict[int, float]) -> None:
        self.company, self.nspec, self.clock = company, nspec, clock
        self.names = list(nspec.layout)

    def get_parameters(self, config: dict[str, Scalar]) -> list[np.ndarray]:
        return [from_fixed(v) for v in self.nspec.initial_model().values()]

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[list[np.ndarray], int, dict[str, Scalar]]:
        r = int(config["server_round"])
        base = {k: to_fixed(np.asarray(v, dtype=np.float64)) for k, v in zip(self.names, parameters, strict=True)}
        t = self.nspec.training
        start = time.perf_counter()
        trained = train(
            self.nspec.model,
            base,
            self.company.train,
            t.for_round(r),
        )
        self.clock[r] = self.clock.get(r, 0.0) + time.perf_counter() - start
        return [from_fixed(trained[k]) for k in self.names], len(self.company.train), {}


class _TimedFedAvg(FedAvg):  # type: ignore[misc]
    """Flower's FedAvg, noting when each round's fit starts and when its aggregate is ready."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started: dict[int, float] = {}
        self.aggregated: dict[int, float] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds of this process (server and clients) from fit to aggregate

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: ClientManager) -> Any:
        self.started[server_round] = time.perf_counter()
        self.cpu[server_round] = -process_cpu()
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]) -> Any:
        out = super().aggregate_fit(server_round, results, failures)
        self.aggregated[server_round] = time.perf_counter()
        self.cpu[server_round] += process_cpu()
        if failures:
            raise RuntimeError(f"Flower round {server_round}: {len(failures)} clients failed: {failures[:1]}")
        return out


def run_flower(companies: list[Company], nspec: NodeSpec, rounds: int, evaluate: Evaluate | None = None) -> FlowerRun:
    """Run Flower FedAvg for `rounds` rounds; `evaluate(round, params)` is called on each round's global model."""
    logging.getLogger("flwr").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="flwr")
    names = list(nspec.layout)
    result = FlowerRun()
    metrics: dict[int, dict[str, float]] = {}

    def server_eval(r: int, arrays: list[np.ndarray], _config: dict[str, Scalar]) -> tuple[float, dict[str, Scalar]]:
        params = {k: to_fixed(np.asarray(v, dtype=np.float64)) for k, v in zip(names, arrays, strict=True)}
        result.params = params
        if evaluate is not None and r > 0:
            metrics[r] = evaluate(r, params)
        return 0.0, {}

    n = len(companies)
    strategy = _TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=n,
        min_available_clients=n,
        initial_parameters=ndarrays_to_parameters([from_fixed(v) for v in nspec.initial_model().values()]),
        on_fit_config_fn=lambda r: {"server_round": r},
        evaluate_fn=server_eval,
    )
    address = f"127.0.0.1:{_free_port()}"
    clocks: list[dict[int, float]] = [{} for _ in companies]
    errors: list[BaseException] = []

    def client(c: Company, clock: dict[int, float]) -> None:
        try:
            _wait_listening(address)  # the legacy gRPC client gives up at once on a refused connection
            start_client(
                server_address=address, client=_Client(c, nspec, clock).to_client(), insecure=True, max_wait_time=60
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=pair, daemon=True) for pair in zip(companies, clocks, strict=True)]
    for t in threads:
        t.start()
    start_server(
        server_address=address, config=ServerConfig(num_rounds=rounds, round_timeout=ROUND_TIMEOUT), strategy=strategy
    )
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise RuntimeError(f"a Flower client failed: {errors[0]!r}")
    if sorted(strategy.aggregated) != list(range(1, rounds + 1)):
        raise RuntimeError(f"Flower finished rounds {sorted(strategy.aggregated)} of {rounds}")
    for r in range(1, rounds + 1):
        result.rounds.append(
            {
                "round": r,
                "seconds": round(strategy.aggregated[r] - strategy.started[r], 4),
                "train_seconds": round(float(np.mean([c.get(r, 0.0) for c in clocks])), 4),
                "cpu_seconds": round(strategy.cpu[r], 3),
                **metrics.get(r, {}),
            }
        )
    return result
