# Two entry points: `make run` (the default ARES run) and `make test`.
# Each creates or updates .venv and installs what it needs; `make test` runs ruff (lint and
# format check, settings in pyproject.toml) before the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# pytest-xdist processes for `make test`; each test file runs whole in one of them
TEST_WORKERS ?= 2

.PHONY: run test bench reproduce clean-venv

$(VENV)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-base
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed-base
	$(PY) -m ares_jax.main $(ARGS)

test: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests $(ARGS)

reproduce: $(VENV)/.installed-base
	$(PY) experiments/reproduce.py $(ARGS)

bench: $(VENV)/.installed-test
	$(PY) bench/bench_model.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
