# The doors: make setup, make test, make lint, make bench. Each is a few lines.
VENV := .venv/bin

.PHONY: setup test lint bench artifacts clean

setup:
	bash scripts/setup.sh

test: lint
	$(VENV)/python -m pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

bench:
	$(VENV)/python -m bench.gas
	$(VENV)/python -m bench.overhead
	$(VENV)/python -m bench.accuracy
	$(VENV)/python -m bench.attacks

artifacts:
	$(VENV)/python -c 'from ledger.compile import main; main()'

clean:
	rm -rf .venv scripts/toolchain/node_modules .pytest_cache .mypy_cache .ruff_cache
