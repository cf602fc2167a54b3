# Quick start: `make demo` (set up + main job), `make test` (set up + tests).
#
# `requirements.lock` pins every package (direct and transitive) with hashes;
# setup installs exactly that set, then jaxbdl itself without dependencies.
# After changing dependencies in pyproject.toml, run `make lock` (uv in a
# throw-away .venv-tools, not a jaxbdl dependency) and commit the lock;
# lock-constraints.txt bounds transitive packages (each bound says why).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/demo
PYTEST_ARGS ?= -n 2
# The O0 lane hands out whole files, longest first (tests/conftest.py).
O0_SCHEDULE ?= --dist loadfile --no-loadscope-reorder
UV_VERSION ?= 0.13.9

.PHONY: demo test lint setup setup-test lock bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m experiments.estimator_variance --workdir $(WORKDIR)/estimator_variance

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Two lanes: the suite at XLA's CPU optimisation level 0 (tests/conftest.py;
# compile-bound tests run several times faster), then the tests marked
# `default_xla` (bitwise resume, tight float tolerances) at XLA's default
# level, the one users run: XLA_FLAGS unset, JAXBDL_TEST_XLA_DEFAULT=1. The
# second lane collects only the files that mark such tests (collecting the
# whole suite costs each of its 3 processes ~10 s).
DEFAULT_XLA_FILES = $(shell grep -l "mark.default_xla" tests/*_test.py)
test: lint
	$(PY) -m pytest $(PYTEST_ARGS) $(O0_SCHEDULE) \
	  -m "not experiment and not default_xla" tests
	env -u XLA_FLAGS JAXBDL_TEST_XLA_DEFAULT=1 $(PY) -m pytest $(PYTEST_ARGS) \
	  -m "default_xla and not experiment" $(DEFAULT_XLA_FILES)

lock:
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install -q uv==$(UV_VERSION)
	.venv-tools/bin/uv pip compile pyproject.toml --extra test \
	  -c lock-constraints.txt --generate-hashes --python-version 3.11 \
	  --no-header -o requirements.lock

# Benchmarks against peers (each peer gets its own throw-away .venv-<name>).
bench: $(VENV)/.installed
	bash bench/setup_optax026.sh && $(PY) bench/estimators_vs_optax.py
	bash bench/setup_numpyro.sh && $(PY) bench/bnn_step_vs_numpyro.py
	$(PY) -m bench.nngp_kernel
	$(PY) bench/scaling.py

clean:
	rm -rf $(VENV) .venv-tools workdirs .pytest_cache
