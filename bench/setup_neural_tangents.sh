#!/usr/bin/env bash
# Creates the throw-away environment .venv-nt/ (git-ignored) with the
# neural-tangents library next to the same jax/jaxlib as the main .venv, for
# bench/nngp_kernel.py (analytic NNGP kernel, side by side with jaxbdl.nngp).
# Usage: bash bench/setup_neural_tangents.sh   (from the repository root; idempotent)
# Exit status 0 only if `import neural_tangents` works; the install/import log
# is kept in bench/results/neural_tangents_setup.log either way.
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
  "$VENV/bin/pip" install -q jax==0.10.2 jaxlib==0.10.2 numpy neural-tangents
  echo "pip exit status: $?"
  "$VENV/bin/pip" list 2>/dev/null | grep -iE '^(jax|jaxlib|neural.tangents|frozendict|tf2jax|tensorflow)\b'
  "$VENV/bin/python" -c "import jax, neural_tangents as nt; print('neural_tangents', nt.__version__, 'jax', jax.__version__, 'import OK')"
  status=$?
  echo "import exit status: $status"
  exit $status
} 2>&1 | grep --line-buffered -v "^WARNING: Location" | tee "$LOG"
exit "${PIPESTATUS[0]}"
