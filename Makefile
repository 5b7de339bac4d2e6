# Two commands matter: `make demo` and `make test`. Both build .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint server clean chromium proxies promtool venv

# Browser tests drive Debian's Chromium through Playwright; never a browser download.
CHROMIUM := /usr/bin/chromium

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The checkout installs itself as a user would (README: "Installing it"), editable so that edits count at
# once: the pins come from requirements.txt (runtime) and requirements-dev.txt (the `dev` extra, which
# includes requirements-otel.txt, the `otel` extra: the tracing tests need it).
$(STAMP): pyproject.toml requirements.txt requirements-dev.txt requirements-otel.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/hammerlab demo

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

chromium: $(CHROMIUM)

# Tests run a stock nginx and HAProxy on loopback (tests/nginx.py, the adaptive limit's "any upstream"
# tests), with their config in temp folders; never as system services.
proxies:
	test -x /usr/sbin/nginx -a -x /usr/sbin/haproxy || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy >/dev/null)

# The target's /metrics is checked by promtool (Debian's prometheus package). Only the tool is wanted: a
# policy-rc.d that answers 101 keeps the package from starting its daemon, and the unit is disabled after.
PROMTOOL := /usr/bin/promtool
POLICY_RC := /usr/sbin/policy-rc.d

promtool:
	test -x $(PROMTOOL) || { \
	  saved=; if [ -e $(POLICY_RC) ]; then saved=$(POLICY_RC).hammerlab; mv $(POLICY_RC) $$saved; fi; \
	  printf '#!/bin/sh\nexit 101\n' > $(POLICY_RC); chmod 755 $(POLICY_RC); \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus >/dev/null; rc=$$?; \
	  rm -f $(POLICY_RC); if [ -n "$$saved" ]; then mv $$saved $(POLICY_RC); fi; \
	  systemctl disable prometheus >/dev/null 2>&1 || true; \
	  exit $$rc; }

test: $(STAMP) $(CHROMIUM) proxies promtool
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tests/run_both.py

test-fast: $(STAMP) promtool
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

server: $(STAMP)
	$(BIN)/python -m target_server

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
