# unbroken: two commands from a fresh clone.
#   make demo   - set up .venv, then run the arrears demo end to end
#   make test   - set up .venv and system tools, then run the test suite (no soak)
# Also: make quick (no slow tests), make bench [QUICK=1], make lint, make clean.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install; pyproject.toml being newer means reinstall.
STAMP := $(VENV)/.unbroken-installed
PYTEST_ARGS ?=
BENCH_ARGS := $(if $(QUICK),--quick,)

# The first interpreter that runs and is Python >= 3.11 (python3 first: it is what
# the offline wheels here are built for). Override with `make PYTHON=/path/to/python3.12`.
PYTHON ?= $(shell for p in python3 python3.11 python3.12 python3.13; do \
	  if $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	    command -v $$p; break; fi; done)

.PHONY: help demo test quick bench lint docs clean system-deps venv

help:
	@echo "make demo    set up .venv and run the arrears demo (generate, import, replay, query, check)"
	@echo "make test    set up .venv and system tools, run every test except soak"
	@echo "make quick   like make test, without slow tests"
	@echo "make bench   run every tests/bench/bench_*.py (QUICK=1 for short runs)"
	@echo "make lint    ruff check"
	@echo "make docs    regenerate the CLI reference in README.md from the parsers"
	@echo "make clean   remove demo-out/ and bench-out/ (keeps .venv)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "make: no Python >= 3.11 found (tried python3, python3.11, python3.12, python3.13);" \
	       "install one or run make PYTHON=/path/to/python3.11" >&2; exit 2; fi
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "make: $(VENV) has Python < 3.11; recreating it" >&2; rm -rf $(VENV); fi
	@if [ ! -x $(BIN)/python ]; then \
	  echo "make: creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))" >&2; \
	  $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# nats-server runs the broker tests; a C compiler builds native/ (LD_PRELOAD faults);
# postgresql's initdb and pg_ctl run the throwaway servers the store kill tests crash.
# As root we install what is missing; otherwise the tests that need them skip with a
# reason, except in CI (CI=true), where a missing tool fails the run.
system-deps:
	@missing=""; \
	command -v nats-server >/dev/null 2>&1 || missing="$$missing nats-server"; \
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing$$missing with apt-get" >&2; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  missing=""; \
	  command -v nats-server >/dev/null 2>&1 || missing="$$missing nats-server"; \
	  command -v cc >/dev/null 2>&1 || missing="$$missing gcc"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$${CI:-}" = true ]; then \
	    echo "make: missing in CI:$$missing (Debian packages; install them first)" >&2; exit 3; fi; \
	  echo "make: missing:$$missing - the tests that need them will be skipped" >&2; \
	fi

demo: $(STAMP)
	$(BIN)/unbroken demo

# pytest exits 5 when it collects nothing: that fails the target, loudly, like any error.
define run_pytest
	@rc=0; $(BIN)/pytest tests -m "$(1)" $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc
endef

test: $(STAMP) system-deps
	$(call run_pytest,not soak)

quick: $(STAMP) system-deps
	$(call run_pytest,not soak and not slow)

bench: $(STAMP)
	@status=0; for script in tests/bench/bench_*.py; do \
	  echo "== $$script $(BENCH_ARGS)"; \
	  $(BIN)/python $$script $(BENCH_ARGS) || { echo "make: $$script failed" >&2; status=1; }; \
	done; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	$(BIN)/python -m load._clidocs README.md

clean:
	rm -rf demo-out bench-out
