# Two commands matter: `make demo` and `make test`. Both build .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint server clean chromium nginx promtool venv

# Browser tests drive Debian's Chromium through Playwright; never a browser download.
CHROMIUM := /usr/bin/chromium

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m comparison --scenario cliff --duration 15

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

chromium: $(CHROMIUM)

# The "test your own service" tests run a stock nginx on loopback (tests/nginx.py); never as a service.
NGINX := /usr/sbin/nginx

nginx:
	test -x $(NGINX) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null)

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

test: $(STAMP) $(CHROMIUM) nginx promtool
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP) promtool
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

server: $(STAMP)
	$(BIN)/python -m target_server

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
