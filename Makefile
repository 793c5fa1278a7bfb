# The two commands of the README. Each sets itself up from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench lint clean lock

# Everything comes from requirements.lock (exact versions, hashes checked); tether and its SDK are
# then installed editable on top without resolving anything else.
$(STAMP): pyproject.toml sdk/pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . -e ./sdk
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
	bash scripts/ensure-tools.sh
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) bench/decision.py

## Try the newest versions pyproject.toml allows and rewrite requirements.lock (then run make test).
lock:
	bash scripts/lock.sh

clean:
	rm -rf $(VENV) .lock-venv .tether .pytest_cache .mypy_cache .ruff_cache
