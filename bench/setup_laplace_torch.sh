#!/usr/bin/env bash
# Throw-away environment with laplace-torch on a CPU torch (the peer of
# bench/laplace_vs_torch.py). PyPI's torchvision does not load beside this
# torch, and laplace-torch only imports it optionally, so it is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-laplace/bin/python ]; then
  python3 -m venv .venv-laplace
  .venv-laplace/bin/pip install -q torch==2.13.0 laplace-torch numpy
  .venv-laplace/bin/pip uninstall -y -q torchvision || true
fi
.venv-laplace/bin/python -c "import torch, laplace; print('torch', torch.__version__, 'laplace-torch', laplace.__version__ if hasattr(laplace, '__version__') else '?')"
