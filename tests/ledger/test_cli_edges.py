"""The command line's rough edges (issue 12), run in process: each error one line, defaults found where they are."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from ledger.chain import connect
from ledger.devnet import AnvilProcess, DevnetState
from ledger.errors import DeploymentError
from node.cli import build_parser, main
from node.cli.common import ipfs_for, rpc_for
from tests.harness import Harness

DEV = [
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",  # anvil's accounts 1 and 2
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
]


def one_error(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 1) -> str:
    """Run `fedchain ARGV`; it must fail with `code` and exactly one `fedchain: error:` line on stderr."""
    try:
        got = main(list(argv))
    except SystemExit as exc:  # argparse
        got = int(exc.code or 0)
    err = capsys.readouterr().err
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedchain: error:"), err
    return lines[0]


def devnet_dir(root: Path, anvil_port: int, kubo_port: int | None = None) -> Path:
    """A dev-net state directory as `devnet up --state-dir` writes it (the processes need not be ours)."""
    state = DevnetState(AnvilProcess(pid=1, port=anvil_port, chain_id=31337, log="anvil.log"))
    if kubo_port is not None:
        state.kubo = [{"repo": "r", "api_port": kubo_port, "swarm_port": 1, "peer_id": "12D3", "pid": 1}]
    state.save(root)
    return root


# -- parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--rounds", "0"], "argument --rounds: expected 1 or more, got 0"),
        (["demo", "--rounds", "-1"], "argument --rounds: expected 1 or more, got -1"),
        (["demo", "--peers", "1"], "argument --peers: expected 2 or more, got 1"),
        (["demo", "--epochs", "0"], "argument --epochs: expected 1 or more"),
        (["demo", "--poisoners", "-2"], "argument --poisoners: expected 0 or more"),
        (["demo", "--peers", "4", "--dirichlet", "0"], "argument --dirichlet: expected a number above 0"),
        (["demo", "--rounds", "many"], "argument --rounds: expected an integer, got 'many'"),
        (["audit", "round", "0"], "expected 1 or more"),
        (["node", "run", "--until-round", "0"], "expected 1 or more"),
        (["demo", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["node", "run", "--metrics-port", "70000"], "expected a port from 1 to 65535, got 70000"),
        (["predict", "--input", "p.csv", "--top", "0"], "argument --top: expected 1 or more"),
    ],
)
def test_bad_arguments_are_one_line_at_parsing(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in one_error(capsys, *argv, code=2)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked first: nothing is fetched, trained or run for an output that could not be written."""
    missing = tmp_path / "no-such-dir" / "x"
    assert "does not exist" in one_error(capsys, "predict", "--input", "p.csv", "--out", f"{missing}.csv")
    assert "is a directory" in one_error(capsys, "predict", "--input", "p.csv", "--out", str(tmp_path))
    (tmp_path / "file").write_text("")
    assert "is a file" in one_error(capsys, "model", "export", "--out", str(tmp_path / "file"), "--spec", "s.toml")
    assert "does not exist" in one_error(capsys, "demo", "--plot", f"{missing}.png")
    assert "name it .png" in one_error(capsys, "demo", "--plot", str(tmp_path / "chart.jpg"))
    assert "give --config (a peer's config), or --spec" in one_error(
        capsys, "predict", "--input", "p.csv", "--deployment", str(tmp_path / "d.json")
    )


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
            missing.append(f"{path} {action.option_strings[0] if action.option_strings else action.dest}")
    return missing


def test_every_option_of_every_command_has_help_text_and_the_version_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _options_without_help(build_parser(), "fedchain") == []
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("fedchain 0.")


def test_debug_is_accepted_after_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.json")
    assert "does not exist" in one_error(capsys, "audit", "rounds", "--deployment", missing)
    for argv in (["--debug", "audit", "rounds"], ["audit", "--debug", "rounds"], ["audit", "rounds", "--debug"]):
        with pytest.raises(DeploymentError):  # the traceback, not the one line
            main([*argv, "--deployment", missing])


# -- files ----------------------------------------------------------------------


DEPLOYMENT = {
    "chain_id": 31337,
    "federation": "0x" + "11" * 20,
    "token": "0x" + "22" * 20,
    "block": 0,
    "spec_hash": "0x" + "33" * 32,
    "deployer": DEV[0],
    "founders": DEV,
    "rpc_url": "http://127.0.0.1:1",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spec_hash": None}, "lacks spec_hash"),
        ({"spec_hash": None, "token": None}, "lacks token, spec_hash"),
        ({"chain_id": "abc"}, 'chain_id = "abc": expected an integer'),
        ({"chain_id": True}, "chain_id = true: expected an integer"),
        ({"block": -1}, "block = -1: expected an integer"),
        ({"founders": "0x12"}, 'founders = "0x12": expected a list of addresses'),
        ({"extra": 1}, "unknown fields: extra"),
    ],
)
def test_a_bad_deployment_file_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], message: str
) -> None:
    doc = {k: v for k, v in {**DEPLOYMENT, **change}.items() if v is not None}
    path = tmp_path / "dep.json"
    path.write_text(json.dumps(doc))
    line = one_error(capsys, "audit", "rounds", "--deployment", str(path))
    assert str(path) in line and message in line and "__init__" not in line


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"fast"', "poll_seconds = 'fast': expected a number of seconds above 0"),
        ("-5", "poll_seconds = -5: expected a number of seconds above 0"),
        ("0", "poll_seconds = 0: expected"),
        ("true", "poll_seconds = True: expected"),
    ],
)
def test_a_bad_peer_config_names_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    cfg = tmp_path / "peer.toml"
    keys = "".join(f'{k} = "{k}"\n' for k in ("name", "data", "keystore", "deployment", "spec", "rpc", "ipfs", "state"))
    cfg.write_text(f"[peer]\n{keys}poll_seconds = {value}\n")
    line = one_error(capsys, "node", "run", "--config", str(cfg))
    assert f"peer config {cfg}" in line and message in line
    cfg.write_text("[peer]\nname = 3\n")
    assert "name = 3: expected a non-empty string" in one_error(capsys, "node", "run", "--config", str(cfg))


# -- node init: endpoints from the deployment or the dev-net, --force -----------


def _init(tmp_path: Path, *extra: str) -> list[str]:
    for name in ("bank.csv", "bank.json", "spec.toml"):
        (tmp_path / name).touch()
    return [
        *("node", "init", "--name", "bank", "--data", str(tmp_path / "bank.csv")),
        *("--keystore", str(tmp_path / "bank.json"), "--spec", str(tmp_path / "spec.toml")),
        *("--deployment", str(tmp_path / "dep.json"), "--out", str(tmp_path / "bank.toml"), *extra),
    ]


def _written(tmp_path: Path) -> dict[str, str]:
    import tomllib

    return dict(tomllib.loads((tmp_path / "bank.toml").read_text())["peer"])


def test_node_init_takes_the_deployments_rpc_and_the_devnets_kubo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no dev-net in the default state directory
    assert main(_init(tmp_path)) == 0
    assert (_written(tmp_path)["rpc"], _written(tmp_path)["ipfs"]) == (
        "http://127.0.0.1:8545",
        "/ip4/127.0.0.1/tcp/5001/http",
    )
    line = one_error(capsys, *_init(tmp_path))
    assert "bank.toml exists; refusing to overwrite a peer config (--force to replace it)" in line

    devnet = devnet_dir(tmp_path / "dn", anvil_port=7545, kubo_port=6001)
    assert main(_init(tmp_path, "--force", "--state-dir", str(devnet))) == 0
    assert (_written(tmp_path)["rpc"], _written(tmp_path)["ipfs"]) == (
        "http://127.0.0.1:7545",
        "/ip4/127.0.0.1/tcp/6001/http",
    )
    (tmp_path / "dep.json").write_text(json.dumps({**DEPLOYMENT, "rpc_url": "http://127.0.0.1:9545"}))
    monkeypatch.setenv("FEDCHAIN_STATE_DIR", str(devnet))
    assert main(_init(tmp_path, "--force")) == 0
    assert (_written(tmp_path)["rpc"], _written(tmp_path)["ipfs"]) == (
        "http://127.0.0.1:9545",  # the deployment's endpoint comes first
        "/ip4/127.0.0.1/tcp/6001/http",
    )
    assert main(_init(tmp_path, "--force", "--rpc", "http://10.0.0.1:8545", "--ipfs", "embedded:blobs")) == 0
    assert (_written(tmp_path)["rpc"], _written(tmp_path)["ipfs"]) == ("http://10.0.0.1:8545", "embedded:blobs")


def test_endpoints_come_from_the_state_dir_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    here, there = devnet_dir(tmp_path / "a", 1111, 2222), devnet_dir(tmp_path / "b", 3333)
    monkeypatch.setenv("FEDCHAIN_STATE_DIR", str(there))
    ns = argparse.Namespace
    assert rpc_for(ns(rpc=None, state_dir=here)) == "http://127.0.0.1:1111"
    assert ipfs_for(ns(ipfs=None, state_dir=here)) == "/ip4/127.0.0.1/tcp/2222/http"
    assert rpc_for(ns(rpc=None, state_dir=None)) == "http://127.0.0.1:3333"
    assert ipfs_for(ns(ipfs=None, state_dir=None)) == "/ip4/127.0.0.1/tcp/5001/http"  # that dev-net has no Kubo


# -- against a real anvil: --state-dir for the chain commands, unpaid rounds explained ---------


def test_chain_commands_find_the_devnet_through_state_dir(
    tmp_path: Path, anvil: AnvilProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDCHAIN_PASSWORD", "pw")
    devnet = str(devnet_dir(tmp_path / "dn", anvil.port))
    for i in (0, 1):
        assert main(["account", "new", "--keystore", f"k{i}.json", "--dev-key", str(i)]) == 0
    (tmp_path / "spec.toml").write_text(
        f"[chain]\nstake = 50\nmin_peers = 2\ncommit_window = 60\n[members]\nfounders = {json.dumps(DEV)}\n"
    )
    assert "no RPC endpoint" in one_error(capsys, "deploy", "--keystore", "k0.json", "--spec", "spec.toml")
    assert main(["deploy", "--state-dir", devnet, "--keystore", "k0.json", "--spec", "spec.toml"]) == 0
    doc = json.loads((tmp_path / "deployment.json").read_text())
    assert doc["rpc_url"] == anvil.url
    (tmp_path / "deployment.json").write_text(json.dumps({**doc, "rpc_url": None}))  # only the dev-net knows
    assert "no RPC endpoint" in one_error(capsys, "join", "--keystore", "k1.json")
    assert main(["join", "--state-dir", devnet, "--keystore", "k1.json"]) == 0
    monkeypatch.setenv("FEDCHAIN_STATE_DIR", devnet)
    capsys.readouterr()
    assert main(["rewards", "--keystore", "k1.json"]) == 0
    assert main(["audit", "rounds"]) == 0
    assert f"member    {DEV[0]} (active)" in capsys.readouterr().out
    assert "no unclaimed rewards" in one_error(capsys, "claim", "--keystore", "k1.json")


def test_rounds_that_paid_nothing_are_explained(
    tmp_path: Path, anvil: AnvilProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    h = Harness.create(connect(anvil.url, anvil.chain_id), founders=2)
    h.join_all()
    paid, unpaid = h.play(scores=[4000, 4000]), h.play(scores=[0, 0])
    dep = tmp_path / "dep.json"
    h.deployment.save(dep)
    assert main(["rewards", "--deployment", str(dep), "--address", h.members[0].address, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unpaid_rounds"] == [unpaid]
    assert main(["rewards", "--deployment", str(dep), "--address", h.members[0].address]) == 0
    out = capsys.readouterr().out
    assert f"unpaid    rounds {unpaid}: voted, scored 0; scoring by agreement, an update earns only if" in out
    assert "at least 0.1" in out and "two peers" in out
    assert main(["audit", "rounds", "--deployment", str(dep)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert "(unpaid)" in rows[2 + unpaid - 1] and "(unpaid)" not in rows[2 + paid - 1]
    assert rows[-1].startswith(f"unpaid: rounds {unpaid} scored every update 0;")
    assert main(["audit", "round", str(unpaid), "--deployment", str(dep)]) == 0
    assert "unpaid: every score was 0;" in capsys.readouterr().out


# -- the demo and robust rules on few companies -----------------------------------


def test_demo_with_few_companies_picks_attackers_it_can_withstand_or_says_what_to_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from node.horizontal.spec import aggregation_settings
    from node.learn.data import Schema
    from node.sim.companies import DemoConfig
    from node.sim.demo import demo_spec

    schema = Schema("y", "yes", {"age": (40.0, 10.0)}, {})
    founders = [f"0x{i:040x}" for i in range(1, 6)]
    for n, rule in ((2, "median"), (3, "multi-krum"), (4, "multi-krum"), (2, "trimmed-mean")):
        spec = demo_spec(DemoConfig(rule=rule, peers=n, split_by=None), schema, founders[:n], n)
        assert aggregation_settings(spec)[2] == 0, (n, rule)  # an honest run too small for one attacker: none
    spec = demo_spec(DemoConfig(rule="multi-krum", peers=5, split_by=None), schema, founders, 5)
    assert aggregation_settings(spec)[2] == 1  # big enough: one declared, as before

    line = one_error(capsys, "demo", "--peers", "3", "--rule", "multi-krum", "--poisoners", "1", "--rounds", "1")
    assert "multi-krum (needs n >= 2f + 3) cannot withstand 1 cheater(s) among 3 companies" in line
    assert "--peers 5" in line and "--rule median" in line and "min_peers" not in line


def test_deploy_refuses_an_unknown_scoring_rule_before_touching_a_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.spec import spec_from_dict

    spec = spec_from_dict(
        {
            "chain": {"min_peers": 1},
            "members": {"founders": ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]},
            "data": {"target": "y", "positive": "yes", "numeric": {"age": [40.0, 10.0]}},
            "scoring": {"rule": "popularity"},
        }
    )
    path = tmp_path / "spec.toml"
    path.write_text(spec.to_toml())
    line = one_error(capsys, "deploy", "--keystore", str(tmp_path / "none.json"), "--spec", str(path))
    assert "[scoring] rule 'popularity': expected one of agreement, evaluation" in line


def test_spec_init_with_epsilon_writes_a_privacy_table_and_refuses_scoring_by_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.spec import load_spec
    from node.datasets import DEFAULT_DATA
    from node.horizontal.spec import NodeSpec

    common = ("spec", "init", "--data", str(DEFAULT_DATA), "--target", "y", "--positive", "yes", "--founders", *DEV)
    out = tmp_path / "spec.toml"
    assert main([*common, "--drop", "duration", "--epsilon", "3", "--dp-rounds", "20", "--out", str(out)]) == 0
    nspec = NodeSpec.from_federation(load_spec(out))
    assert nspec.privacy is not None and (nspec.privacy.epsilon, nspec.privacy.rounds) == (3.0, 20)
    assert nspec.scoring == "agreement"
    line = one_error(capsys, *common, "--epsilon", "3", "--scoring", "evaluation", "--out", str(tmp_path / "x.toml"))
    assert "published outside the privacy accountant" in line
    assert not (tmp_path / "x.toml").exists()


def test_audit_keygen_and_spec_init_sealed_with_an_auditor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.spec import load_spec
    from node.datasets import DEFAULT_DATA
    from node.horizontal.spec import NodeSpec
    from node.privacy.seal import SealKey

    monkeypatch.setenv("FEDCHAIN_PASSWORD", "auditing")
    pem = tmp_path / "auditor.pem"
    assert main(["audit", "keygen", "--out", str(pem)]) == 0
    public = capsys.readouterr().out.strip().splitlines()[-1]
    assert public == "0x" + SealKey.load(pem, "auditing").public.hex() and pem.stat().st_mode & 0o077 == 0
    assert "not overwritten" in one_error(capsys, "audit", "keygen", "--out", str(pem))
    common = ("spec", "init", "--data", str(DEFAULT_DATA), "--target", "y", "--positive", "yes", "--founders", *DEV)
    out = tmp_path / "spec.toml"
    assert main([*common, "--drop", "duration", "--auditor", public, "--out", str(out)]) == 0
    sealing = NodeSpec.from_federation(load_spec(out)).sealing
    assert sealing is not None and sealing.auditors == (bytes.fromhex(public[2:]),)
    line = one_error(capsys, *common, "--auditor", "0x1234", "--out", str(tmp_path / "x.toml"))
    assert "is not an X25519 public key" in line and not (tmp_path / "x.toml").exists()
