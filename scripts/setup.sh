#!/usr/bin/env bash
# One-command setup: Python venv, anvil + solc + OpenZeppelin from npm, Kubo, geth and toxiproxy from Go.
# Idempotent: a second run only checks. Everything comes from PyPI, npm and the
# Go module proxy; nothing is downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { printf '==> %s\n' "$*"; }

# --- Python -------------------------------------------------------------------
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: fedchain needs Python 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || { say "creating .venv"; "$PYTHON" -m venv .venv; }
stamp=.venv/.fedchain-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing fedchain and its dependencies into .venv (torch is large; pip caches it)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,bench]"
  echo "$want" > "$stamp"
fi

# --- Slither, in a venv of its own (it pins web3<8; fedchain needs web3 8) --------
stamp=.venv/slither/.fedchain-deps
want=$(sha256sum scripts/slither-requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Slither into .venv/slither"
  [ -x .venv/slither/bin/python ] || "$PYTHON" -m venv .venv/slither
  .venv/slither/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/slither-requirements.txt
  echo "$want" > "$stamp"
fi

# --- npm: anvil, the Solidity compiler (wasm), OpenZeppelin -------------------
command -v npm >/dev/null || { echo "setup: npm is missing (install Node.js 20 with npm)" >&2; exit 1; }
stamp=scripts/toolchain/node_modules/.fedchain-lock
want=$(sha256sum scripts/toolchain/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing anvil, solc and OpenZeppelin into scripts/toolchain (npm ci)"
  (cd scripts/toolchain && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

# --- Kubo (IPFS), built once per machine from its Go module -------------------
KUBO_VERSION=$(.venv/bin/python -c 'from ledger.toolchain import KUBO_VERSION; print(KUBO_VERSION)')
KUBO_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/fedchain/kubo-$KUBO_VERSION
if [ ! -x "$KUBO_DIR/ipfs" ]; then
  command -v go >/dev/null || { echo "setup: go is missing (Kubo is built from its Go module)" >&2; exit 1; }
  say "building Kubo $KUBO_VERSION from the Go module proxy (once per machine, a few minutes)"
  mkdir -p "$KUBO_DIR"
  (cd scripts/kubo && go build -trimpath -o "$KUBO_DIR/ipfs.tmp" github.com/ipfs/kubo/cmd/ipfs)
  mv "$KUBO_DIR/ipfs.tmp" "$KUBO_DIR/ipfs"
fi

# --- geth (go-ethereum), the second chain client, built once per machine ------------
GETH_VERSION=$(.venv/bin/python -c 'from ledger.toolchain import GETH_VERSION; print(GETH_VERSION)')
GETH_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/fedchain/geth-$GETH_VERSION
if [ ! -x "$GETH_DIR/geth" ]; then
  command -v go >/dev/null || { echo "setup: go is missing (geth is built from its Go module)" >&2; exit 1; }
  say "building geth $GETH_VERSION from the Go module proxy (once per machine, a few minutes)"
  mkdir -p "$GETH_DIR"
  (cd scripts/geth && go build -trimpath -o "$GETH_DIR/geth.tmp" github.com/ethereum/go-ethereum/cmd/geth)
  mv "$GETH_DIR/geth.tmp" "$GETH_DIR/geth"
fi

# --- toxiproxy, the network faults of the fault tests, built once per machine -------
TOXI_VERSION=$(.venv/bin/python -c 'from ledger.toolchain import TOXIPROXY_VERSION; print(TOXIPROXY_VERSION)')
TOXI_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/fedchain/toxiproxy-$TOXI_VERSION
if [ ! -x "$TOXI_DIR/toxiproxy-server" ]; then
  command -v go >/dev/null || { echo "setup: go is missing (toxiproxy is built from its Go module)" >&2; exit 1; }
  say "building toxiproxy $TOXI_VERSION from the Go module proxy (once per machine, about 20 seconds)"
  mkdir -p "$TOXI_DIR"
  (cd scripts/toxiproxy && go build -trimpath -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=${TOXI_VERSION#v}" \
    -o "$TOXI_DIR/toxiproxy-server.tmp" github.com/Shopify/toxiproxy/v2/cmd/server)
  mv "$TOXI_DIR/toxiproxy-server.tmp" "$TOXI_DIR/toxiproxy-server"
fi

say "checking the toolchain"
"$ROOT/.venv/bin/fedchain" doctor
