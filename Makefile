# Quick start: `make demo` (set up + main job), `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?= -n 2

.PHONY: demo test setup setup-test bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m experiments.estimator_variance --workdir $(WORKDIR)/estimator_variance

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS) -m "not experiment" tests

# Benchmarks against peers (each peer gets its own throw-away .venv-<name>).
bench: $(VENV)/.installed
	bash bench/setup_optax026.sh && $(PY) bench/estimators_vs_optax.py
	bash bench/setup_numpyro.sh && $(PY) bench/bnn_step_vs_numpyro.py
	$(PY) -m bench.nngp_kernel
	$(PY) bench/scaling.py

clean:
	rm -rf $(VENV) workdirs .pytest_cache
