# The doors: make setup, make test, make lint, make bench. Each is a few lines.
VENV := .venv/bin

.PHONY: setup test lint slither bench artifacts clean

setup:
	bash scripts/setup.sh

test: lint
	$(VENV)/python -m pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/python scripts/slither_check.py

# Slither on contracts/, against contracts/slither-triage.toml (also the last step of lint).
slither:
	$(VENV)/python scripts/slither_check.py

# Timed benchmarks first, while the machine is idle; then the deterministic ones; then BENCHMARKS.md.
bench:
	$(VENV)/python -m bench.preflight
	$(VENV)/python -m bench.speed
	$(VENV)/python -m bench.scale
	$(VENV)/python -m bench.overhead
	$(VENV)/python -m bench.timing
	$(VENV)/python -m bench.gas
	$(VENV)/python -m bench.psi
	$(VENV)/python -m bench.csvload
	$(VENV)/python -m bench.faults
	$(VENV)/python -m bench.vertical
	$(VENV)/python -m bench.accuracy
	$(VENV)/python -m bench.attacks
	$(VENV)/python -m bench.rewards
	$(VENV)/python -m bench.privacy
	$(VENV)/python -m bench.envelope
	$(VENV)/python -m bench.report

artifacts:
	$(VENV)/python -c 'from ledger.compile import main; main()'

clean:
	rm -rf .venv scripts/toolchain/node_modules .pytest_cache .mypy_cache .ruff_cache
