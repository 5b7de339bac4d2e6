# Two commands matter: `make demo` and `make test`. Both build .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint server clean chromium proxies venv

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

# Tests run a stock nginx and HAProxy on loopback (tests/nginx.py, the adaptive limit's "any upstream"
# tests), with their config in temp folders; never as system services.
proxies:
	test -x /usr/sbin/nginx -a -x /usr/sbin/haproxy || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy >/dev/null)

test: $(STAMP) $(CHROMIUM) proxies
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

server: $(STAMP)
	$(BIN)/python -m target_server

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
