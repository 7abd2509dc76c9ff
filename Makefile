# Vigil: `make run` brings the whole system up on this machine, `make test` runs the suite.
# Both install what is missing first (system packages as root, else they say what to install).

PY := .venv/bin/python

.PHONY: run test bench demo chaos lint fmt setup clean

setup:
	scripts/provision test

run:
	scripts/provision run
	$(PY) -m devstack.run

demo:
	scripts/provision run
	$(PY) -m devstack.run --demo

chaos: setup
	$(PY) -m devstack.chaos

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

bench: setup
	$(PY) -m bench $(if $(filter 1 true yes,$(SOAK)),--soak)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf .venv .pytest_cache .ruff_cache test-artifacts
