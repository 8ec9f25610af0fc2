# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv if missing, installs nasbench, runs a real search on the embedded default
#   make test   same set-up, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/nasbench search --strategy darts

test: install
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check nasbench search_spaces experiments tests

clean:
	rm -rf $(VENV) nasbench.db best.json best.safetensors .pytest_cache
