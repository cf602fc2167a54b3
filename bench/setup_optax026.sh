#!/usr/bin/env bash
# Creates the throw-away environment .venv-optax026/ (git-ignored) holding
# optax 0.2.6, the last optax release that still ships optax.monte_carlo, next
# to the same jax/jaxlib/chex as the main .venv, for bench/estimators_vs_optax.py.
# Usage: bash bench/setup_optax026.sh   (from the repository root; idempotent)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-optax026
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q jax==0.10.2 jaxlib==0.10.2 optax==0.2.6 chex==0.1.92 numpy
"$VENV/bin/python" -c "import jax, optax; from optax import monte_carlo; print('optax', optax.__version__, 'jax', jax.__version__, 'monte_carlo OK')"
