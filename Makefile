# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format install clean bench

run: install  ## Run the service on http://localhost:3000 with local PostgreSQL and storage emulators
	$(BIN)/python -m devstack

test: install lint  ## Run lint, type checks and the test suite
	$(BIN)/pytest

bench: install  ## Benchmark ours vs a guide-like baseline and an echo ceiling (needs wrk: apt-get install wrk)
	$(BIN)/python -m bench

lint: install  ## ruff, mypy, and the Dockerfile and compose file linters
	$(BIN)/ruff check app devstack deploy bench tests
	$(BIN)/ruff format --check app devstack deploy bench tests
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

format:
	$(BIN)/ruff format app devstack deploy bench tests
	$(BIN)/ruff check --fix app devstack deploy bench tests

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Azurite (the Azure emulator) comes from npm; without Node the Azure provider stays off locally.
node_modules/.installed: package.json
	@if command -v npm >/dev/null 2>&1; then npm install --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: Azure emulator skipped"; fi

clean:
	rm -rf $(VENV) node_modules .devstack .pytest_cache .mypy_cache .ruff_cache
