# The two commands the README starts with: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test unit setup system-deps lint bench clean

demo: setup
	$(BIN)/turnout demo

test: setup
	$(BIN)/pytest -q

# Seconds, no servers: every test but those marked `sandbox` (tests/conftest.py marks each test
# that starts servers). `make unit ARGS=--lf` reruns what failed last.
unit: setup
	$(BIN)/pytest -q -m "not sandbox" $(ARGS)

setup: system-deps $(VENV)/.installed

system-deps:
	@./scripts/system-deps.sh

# The data path is compiled (setup.py): a change to its sources rebuilds it.
COMPILED_SOURCES := $(wildcard src/turnout/protocol/*.py src/turnout/proxy/*.py)

$(VENV)/.installed: pyproject.toml setup.py $(COMPILED_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

lint: setup
	$(BIN)/ruff check src tests bench setup.py
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench.proxy_throughput

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
