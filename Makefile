# The two commands of the README:
#   make run    set everything up (venv, database, demo county, index) and start the service
#   make test   set everything up for the tests and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test setup browser lint

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)
	$(BIN)/huinong init-db
	$(BIN)/huinong load-demo
	$(BIN)/huinong build-index --if-needed

# Plain HTTP on localhost: the console cookie cannot be Secure-only here.
run: setup
	HUINONG_COOKIE_SECURE=false $(BIN)/huinong serve --host $(HOST) --port $(PORT)

# Debian's Chromium for the console's browser tests, and a CJK font so its screenshots show
# Chinese instead of empty boxes (needs root, as on CI).
BROWSER_PKGS := chromium fonts-wqy-microhei
browser:
	@missing=""; for p in $(BROWSER_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing: run 'sudo apt-get install$$missing' (browser tests will fail)"; fi; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check bot handlers knowledge storage tests
