# thinsync — `make demo` runs the demo, `make test` installs what the tests need and runs them all.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.PHONY: demo test lint unit integration fuzz browser chromium bench faults clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/thinsync demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports --config pyproject.toml
	$(BIN)/mypy

unit: $(STAMP)
	$(PYTEST) tests/unit -q

integration: $(STAMP)
	$(PYTEST) tests/integration -q

fuzz: $(STAMP)
	$(PYTEST) tests/fuzz -q -p no:randomly

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

browser: $(STAMP) chromium
	$(PYTEST) tests/browser -q

# Everything CI runs: lint and architecture, then each suite as its own pytest run.
test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(PYTEST) tests/unit tests/integration tests/faults/test_faults_short.py -q
	$(PYTEST) tests/fuzz -q
	$(MAKE) --no-print-directory browser

# Long random fault schedules (20 seeds, up to a minute each): not part of `make test`.
faults: $(STAMP)
	$(PYTEST) tests/faults/test_faults_long.py -q -m faults

# Benchmarks measure the server as deployed for production: with the `speed` extra (uvloop, httptools).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[speed]'
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
