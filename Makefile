# `make demo` and `make test` work on a fresh clone: each creates .venv when it is missing.
PY := .venv/bin/python
MNIST ?= $(MOTIONCORE_DATA)

.PHONY: setup demo dry-run ui test test-gpu lint bench clean

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet -e '.[dev]'
	touch $@

setup: .venv/.installed

demo: setup  # three research-table cells at a demo budget, two seeds: it learns (~3.3 min on 2 CPUs, fp32)
	$(PY) -m orchestrator.sweep --space demo --seeds 2

dry-run: setup  # the plumbing check: every cell of the research table at a tiny budget (~1 min)
	$(PY) -m orchestrator.sweep --space seed_table --dry-run

ui: setup  # the MLflow UI on the local store: http://127.0.0.1:5000
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/sweeps/mlflow.db --workers 1 --port 5000

test: setup
	$(PY) -m pytest -q

test-gpu: setup  # the CUDA paths, on a machine with a GPU (they skip without one)
	$(PY) -m pytest -q -m gpu

bench: setup  # every benchmark in turn (minutes); each prints one JSON line last
	$(PY) benchmarks/datagen.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/sweep_overhead.py
	$(PY) benchmarks/sweep_scale.py
	$(PY) benchmarks/gpu_packing.py

lint: setup
	.venv/bin/ruff check .

clean:
	rm -rf .venv sweeps
