"""The folders are the layers, and the imports say so.

- `node.core` (what every peer and `audit verify` compute bit for bit) imports
  neither torch, nor I/O, nor `ledger`, nor any other part of `node`.
- The runtime (`node.core`, `node.learn`, `node.store`, `node.horizontal`,
  `node.events`, `node.errors`) never imports the simulation or the command line.
- `ledger` never imports `node`; nothing imports the benchmarks or their yardstick.
- No import cycles; no private name (`_x`) imported across modules, tests included.
- The command line loads heavy modules only when a command runs them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "node")

# Modules that touch files, sockets, processes or the network, and the heavy stacks.
IO_AND_HEAVY = {
    *("os", "io", "pathlib", "socket", "subprocess", "tempfile", "shutil", "urllib", "http", "requests"),
    *("ipfshttpclient", "torch", "web3", "eth_tester", "eth_account", "solcx", "ledger"),
}
RUNTIME = (
    "node.core",
    "node.learn",
    "node.store",
    "node.horizontal",
    "node.vertical",
    "node.privacy",
    "node.events",
    "node.errors",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import in `path` (also inside functions and TYPE_CHECKING blocks): (module, names imported)."""
    tree = ast.parse(path.read_text())
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names]))
    return found


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a `from pkg import mod` counts as importing pkg.mod)."""
    modules = {_module_name(p): p for p in _sources(*PACKAGES)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for module, names in _imports(path):
            if module.split(".")[0] not in PACKAGES:
                continue
            subs = {f"{module}.{n}" for n in names if f"{module}.{n}" in modules}
            edges |= subs or {module}
        graph[name] = edges - {name}
    return graph


def _top(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def test_the_pure_core_imports_no_torch_no_io_and_no_ledger() -> None:
    files = _sources("node/core")
    assert len(files) >= 4
    offenders = []
    for path in files:
        for module, _ in _imports(path):
            outside = module.startswith("node.") and not module.startswith(("node.core", "node.errors"))
            if _top(module) in IO_AND_HEAVY or outside:
                offenders.append(f"{_module_name(path)} imports {module}")
    assert offenders == []


def test_the_runtime_never_imports_the_simulation_or_the_command_line() -> None:
    graph = _graph()
    offenders = [
        f"{m} imports {t}"
        for m, targets in graph.items()
        if m.startswith(RUNTIME)
        for t in targets
        if t.startswith(("node.sim", "node.cli"))
    ]
    assert offenders == []


def test_ledger_never_imports_node() -> None:
    files = _sources("ledger")
    assert files
    offenders = [str(p.relative_to(ROOT)) for p in files if any(_top(m) == "node" for m, _ in _imports(p))]
    assert offenders == []


def test_fedchain_never_imports_the_benchmarks_or_their_yardstick() -> None:
    """flwr is the `bench` extra: the product must run without it (matplotlib, which draws `demo --plot`'s
    charts, is a dependency)."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in _sources(*PACKAGES)
        if {_top(m) for m, _ in _imports(p)} & {"bench", "flwr", "tests"}
    ]
    assert offenders == []


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append([*path[path.index(t) :], t] if t in path else [m, t])
            elif t not in state and t in graph:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_private_name_is_imported_across_modules() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {module}.{name}"
        for p in _sources("ledger", "node", "bench", "tests")
        for module, names in _imports(p)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []


def _loaded_after(code: str) -> list[str]:
    heavy = ("torch", "web3", "eth_tester", "solcx", "ipfshttpclient")
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_command_line_parser_loads_no_heavy_module() -> None:
    assert _loaded_after("from node.cli import build_parser\nbuild_parser().format_help()") == []


def test_importing_the_ledger_never_loads_the_compiler() -> None:
    loaded = _loaded_after("import ledger, ledger.client, ledger.deploy, ledger.audit, ledger.contracts")
    assert "solcx" not in loaded
    assert "web3" in loaded  # the probe can see a heavy module load: the check above is not vacuous
