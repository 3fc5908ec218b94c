# `make demo` and `make test` work on a fresh clone: each creates .venv when it is missing.
PY := .venv/bin/python
MNIST ?= $(MOTIONCORE_DATA)

.PHONY: setup demo test lint bench clean

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet -e '.[dev]'
	touch $@

setup: .venv/.installed

demo: setup
	$(PY) -m orchestrator.sweep --space seed_table --dry-run

test: setup
	$(PY) -m pytest -q

lint: setup
	.venv/bin/ruff check .

clean:
	rm -rf .venv sweeps
