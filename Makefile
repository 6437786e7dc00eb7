# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: libmagic servers run test test-unit lint format install browser clean bench

run: install  ## Run the service on http://localhost:3000 with local PostgreSQL and storage emulators
	$(BIN)/python -m devstack

test: install lint  ## Run lint, type checks and the test suite (every layer)
	$(BIN)/pytest

test-unit: $(VENV)/.installed  ## Run the unit layer alone: seconds, nothing started, no server needed
	$(BIN)/pytest tests/unit

bench: install  ## Benchmark ours vs the guide's own code, an echo, and Uppy Companion (needs wrk: apt-get install wrk)
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

install: $(VENV)/.installed node_modules/.installed browser servers libmagic

# The browser tests drive Debian's Chromium (Playwright cannot download its own here).
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$CHROMIUM_PATH" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	else echo "chromium not found: install it (Debian: apt-get install chromium) or set CHROMIUM_PATH"; fi

# libmagic, which save-metadata asks what an upload's bytes are (python-magic loads it).
libmagic:
	@if $(PYTHON) -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('magic'))"; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q libmagic1 >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libmagic1 >/dev/null; }; \
	else echo "libmagic not found: install it (Debian: apt-get install libmagic1; macOS: brew install libmagic)"; exit 1; fi

# Real servers the tests start themselves, from Debian's packages (command:package): a
# connection pooler in transaction mode, as Neon's pooled URL is; a forward proxy for
# HTTP(S)_PROXY; the reverse proxy and the shared Redis in front of and behind replicas.
DEBIAN_SERVERS := pgbouncer:pgbouncer tinyproxy:tinyproxy nginx:nginx redis-server:redis-server

servers:
	@for pair in $(DEBIAN_SERVERS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
		if command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ -x /usr/bin/$$cmd ]; then continue; fi; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkg >/dev/null 2>&1 || \
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$pkg >/dev/null; }; \
		else echo "$$cmd not found: install it (Debian: apt-get install $$pkg) for the tests that start one"; fi; \
	done

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Uppy (the upload page) and Azurite (the Azure emulator) come from npm.
node_modules/.installed: package.json
	@if command -v npm >/dev/null 2>&1; then npm install --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the upload page and the Azure emulator need Node.js and npm"; fi

clean:
	rm -rf $(VENV) node_modules .devstack .pytest_cache .mypy_cache .ruff_cache
