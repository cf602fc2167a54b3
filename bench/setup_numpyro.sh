#!/usr/bin/env bash
# Throw-away environment with NumPyro 0.22 on jax 0.10.2 (the peer of bench/bnn_step_vs_numpyro.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-numpyro/bin/python ]; then
  python3 -m venv .venv-numpyro
  .venv-numpyro/bin/pip install -q jax==0.10.2 jaxlib==0.10.2 numpyro==0.22.0 numpy
fi
.venv-numpyro/bin/python -c "import numpyro, jax; print('numpyro', numpyro.__version__, 'jax', jax.__version__)"
