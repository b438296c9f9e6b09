# stalwart: `make run` starts the embedded system with the demo; `make test` runs every check.
# Each target installs only what it needs: scripts/setup.sh run|test|bench.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUN := $(VENV)/.installed-run
TEST := $(VENV)/.installed-test
BENCH := $(VENV)/.installed-bench

.PHONY: run test lint typecheck pytest chaos bench setup clean

$(VENV)/.installed-%: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $* $(PYTHON) $(VENV)
	touch $@

setup: $(TEST)

run: $(RUN)
	$(BIN)/stalwart up --demo

lint: $(TEST)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports

typecheck: $(TEST)
	$(BIN)/mypy --strict src

# Tests run in PYTEST_WORKERS processes (pytest-xdist): most wait on brokers, databases
# and child processes rather than the CPU. The fault suite (tests/chaos) runs one test
# after another on one of them (its xdist_group).
PYTEST_WORKERS ?= 4
pytest: $(TEST)
	$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test: lint typecheck pytest

# The fault suite at full counts (`make test` runs it at short counts); prints its counts.
chaos: $(TEST)
	STALWART_CHAOS_FULL=1 $(BIN)/pytest -q -p no:cacheprovider -s tests/chaos $(PYTEST_ARGS)

bench: $(BENCH)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .stalwart .mypy_cache .ruff_cache
