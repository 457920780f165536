# flashsale: `make run` sets up and serves the storefront; `make test` sets up and runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT
REDIS_URL ?= redis://127.0.0.1:6379/0
export REDIS_URL
TEST_REDIS_URL ?= $(patsubst %/0,%/15,$(REDIS_URL))
export TEST_REDIS_URL
PYTEST_ARGS ?=

.PHONY: run test lint format install install-dev serve bench clean vendor-altcha

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

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
vendor-altcha:
	rm -rf var/altcha-pkg && mkdir -p var/altcha-pkg
	cd var/altcha-pkg && npm pack --silent altcha@$(ALTCHA_VERSION) && tar xzf altcha-$(ALTCHA_VERSION).tgz
	cp var/altcha-pkg/package/dist/main/altcha.min.js static/vendor/altcha/altcha.min.js
	cp var/altcha-pkg/package/LICENSE.txt static/vendor/altcha/LICENSE.txt
