#!/usr/bin/env bash
# Creates the throw-away environment .venv-nt/ (git-ignored) with
# neural-tangents 0.6.5 on jax/jaxlib 0.4.23 and numpy<2 (0.6.5 does not import
# on jax 0.10: it needs jax.core.Jaxpr). Installed without dependencies: its
# tensorflow / tf2jax requirements only serve neural_tangents.experimental
# (TF empirical kernels), which bench/ntk_kernel.py stubs out before import.
# Used by bench/ntk_kernel.py (the NTK/NNGP side by side with jaxbdl.gaussian_processes.nngp, run
# from the main .venv; neural-tangents runs in a worker subprocess here).
# Usage: bash bench/setup_neural_tangents.sh   (from the repository root; idempotent)
# Exit status 0 only if the stax kernels import; log in
# bench/results/neural_tangents_setup.log.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-nt
PYTHON=${PYTHON:-python3}
LOG=bench/results/neural_tangents_setup.log
mkdir -p bench/results
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) bash bench/setup_neural_tangents.sh"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --no-deps "jax==0.4.23" "jaxlib==0.4.23" \
    "numpy<2" "scipy<1.13" "ml_dtypes<0.4" "opt_einsum" "frozendict" \
    "typing_extensions" "neural-tangents==0.6.5"
  echo "pip exit status: $?"
  "$VENV/bin/pip" list 2>/dev/null | grep -iE '^(jax|jaxlib|numpy|scipy|neural.tangents)\b'
  "$VENV/bin/python" -c "
import sys, types
sys.modules['neural_tangents.experimental'] = types.ModuleType('neural_tangents.experimental')
import jax, neural_tangents as nt
from neural_tangents import stax
print('neural_tangents', nt.__version__, 'jax', jax.__version__, 'import OK')"
  status=$?
  echo "import exit status: $status"
  exit $status
} 2>&1 | grep --line-buffered -v "^WARNING: Location" | tee "$LOG"
exit "${PIPESTATUS[0]}"
