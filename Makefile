# The two commands of the README: `make run` (demo service, no external server needed) and
# `make test` (the whole check suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Demo settings: development mode (DJANGO_DEBUG defaults to false), the app lives in the
# offline Feishu sandbox on port 8001.
run: export DJANGO_DEBUG ?= true
run: export LARK_APP_ID ?= cli_demo_app
run: export LARK_APP_SECRET ?= demo-app-secret
run: export LARK_ENCRYPT_KEY ?= demo-encrypt-key
run: export LARK_VERIFICATION_TOKEN ?= demo-verification-token
run: export LARK_DOMAIN ?= http://127.0.0.1:8001
run: export LARKAUTH_PUBLIC_URL ?= http://127.0.0.1:8000
run: export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/var/metrics
run: $(STAMP)
	rm -rf "$$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	$(VENV)/bin/honcho -f Procfile.dev start

# The suite runs in development mode (pytest also sets it: pyproject.toml).
test: export DJANGO_DEBUG ?= true
test: $(STAMP)
	source .ci/services.sh && \
	$(VENV)/bin/ruff check . && \
	$(VENV)/bin/ruff format --check . && \
	$(VENV)/bin/mypy . && \
	$(PY) manage.py makemigrations --check --dry-run && \
	$(VENV)/bin/pytest -n 2 -q

bench: $(STAMP)
	source .ci/services.sh && $(PY) -m bench
