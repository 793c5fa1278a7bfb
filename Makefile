# The two commands of the README. Each sets itself up from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml sdk/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -e './sdk[openai-agents,langchain,langgraph,mcp]'
	touch $(STAMP)

## Run the embedded default: a real server on loopback, SQLite, dev identity, example policies.
demo: $(STAMP)
	$(VENV)/bin/tether demo

## Lint, type-check, check the layering, and run every test.
test: $(STAMP)
	$(VENV)/bin/ruff check src sdk tests bench
	$(VENV)/bin/ruff format --check src sdk tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-redis.sh
	bash scripts/ensure-chromium.sh
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) bench/decision.py

clean:
	rm -rf $(VENV) .tether .pytest_cache .mypy_cache .ruff_cache
