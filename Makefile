# Quick start: `make demo` (set up + main job), `make test` (set up + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?= -n 2

.PHONY: demo test setup setup-test experiments bench clean

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

clean:
	rm -rf $(VENV) workdirs .pytest_cache
