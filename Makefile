# mmo: the two commands that matter are `make run` and `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= conf/standalone.toml
CERTS ?= certs
TRIAL_ARGS ?= tests
# Test processes run side by side, one per core (the suite's tests each start
# their own servers on free ports, so they do not share any).
TRIAL_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

# Reinstall into the virtualenv whenever the package or its metadata changes.
SOURCES := setup.py pyproject.toml README.md $(shell find mmo twisted -name '*.py' -o -name '*.pyx' 2>/dev/null) $(wildcard mmo/web/static/*) $(wildcard mmo/console/static/*)
STAMP := $(VENV)/.installed

CLUSTER_CONFIG ?= conf/cluster.toml
CLUSTER_CERTS ?= var/cluster/certs

.PHONY: run cluster test certs lint clean venv bench js demo console-test-deps

venv: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mmo needs Python 3.11 or newer; set PYTHON=")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# A stale build/ would install modules that no longer exist in the tree.
# The compiled kernel is built in the source tree as well, for the tests and
# the commands run from it (PYTHONPATH=.); MMO_PURE_PYTHON=1 builds none (and
# leaves no stale one).
$(STAMP): $(BIN)/python $(SOURCES)
	rm -rf build mmo/zone/_kernel.*.so mmo/_tlswrite.*.so mmo/bot/_lazy.*.so
	$(BIN)/python -m pip install --quiet '.[dev]'
	$(BIN)/python setup.py --quiet build_ext --inplace
	@touch $@

# Development certificates and the ticket key, made once (renewed with the
# existing CA when an older set lacks a file).
$(CERTS)/ticket.key: | $(STAMP)
	if [ -e $(CERTS)/ca.crt ]; then $(BIN)/mmo-certs --config $(CONFIG) --renew; \
	else $(BIN)/mmo-certs --config $(CONFIG); fi

certs: $(STAMP)
	$(BIN)/mmo-certs --config $(CONFIG) $(CERTS_ARGS)

# The browser demo's address is printed first (the server logs it too).
run: $(STAMP) $(CERTS)/ticket.key
	@$(BIN)/python -m mmo.web --config $(CONFIG)
	$(BIN)/twistd -n mmo --config $(CONFIG)

# A whole local cluster (Redis, login, two gateways, lobby, chat, two zones,
# ladder, economy) under one manager; its certificates and secrets (the local
# Redis's password among them) are made once, like run's.
$(CLUSTER_CERTS)/redis.password: | $(STAMP)
	if [ -e $(CLUSTER_CERTS)/ca.crt ]; then $(BIN)/mmo-certs --config $(CLUSTER_CONFIG) --renew; \
	else $(BIN)/mmo-certs --config $(CLUSTER_CONFIG); fi

cluster: $(STAMP) $(CLUSTER_CERTS)/redis.password
	@$(BIN)/python -m mmo.web --config $(CLUSTER_CONFIG)
	@$(BIN)/python -m mmo.console --config $(CLUSTER_CONFIG)
	$(BIN)/twistd -n --pidfile= mmo-manager --config $(CLUSTER_CONFIG) --process manager

test: $(STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/trial -j$(TRIAL_JOBS) $(TRIAL_ARGS)

# The TypeScript client SDK (clients/js): its packages from the lock file,
# the compiled package and the browser bundle (dist/mmo-client.browser.js).
js:
	cd clients/js && npm ci --no-audit --no-fund && npm run build && npm run bundle
	sha256sum clients/js/package-lock.json | cut -d' ' -f1 > clients/js/node_modules/.mmo-lock.sha256

# The browser demo (clients/demo): its packages from the lock file, and its
# bundle rebuilt into mmo/web/static/ (committed, so that make run needs no
# Node; tests/test_browser.py checks it is what the sources build).
demo:
	cd clients/demo && npm ci --no-audit --no-fund && npm run check && npm run build
	sha256sum clients/demo/package-lock.json | cut -d' ' -f1 > clients/demo/node_modules/.mmo-lock.sha256

# The admin console's browser test (clients/console): playwright-core from
# its lock file. The console's pages are plain files in mmo/console/static/.
console-test-deps:
	cd clients/console && npm ci --no-audit --no-fund
	sha256sum clients/console/package-lock.json | cut -d' ' -f1 > clients/console/node_modules/.mmo-lock.sha256

# Every benchmark (bench/run.py, a few minutes): writes docs/benchmarks.md,
# its plots and figures in docs/benchmarks/.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet '.[bench]'
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check mmo twisted tests bench examples
	$(BIN)/ruff format --check mmo twisted tests bench examples

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp* .hypothesis .ruff_cache clients/js/dist
	find . -name __pycache__ -prune -exec rm -rf {} +
	rm -f twisted/plugins/dropin.cache mmo/zone/_kernel.c mmo/zone/_kernel.*.so mmo/_tlswrite.c mmo/_tlswrite.*.so
