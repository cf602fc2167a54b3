#!/usr/bin/env bash
# GPU paths and timings, run on a machine with a GPU (the `device` tool here):
#   bash bench/gpu_check.sh OUT_DIR
# 1. bench/scaling.py --gpu (CPU vs GPU, same process), 2. a GPU run of the
# core test modules, 3. every experiment's default config on the GPU; logs and
# outputs are packed into OUT_DIR (at most a few files).
set -u
OUT=${1:-/tmp/jaxbdl_gpu}
mkdir -p "$OUT/exp"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
PY=${PY:-python3}
{ nvidia-smi -L; $PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"; } > "$OUT/env.log" 2>&1
timeout 150 $PY bench/scaling.py --gpu > "$OUT/scaling_gpu.log" 2>&1
cp bench/results/scaling_gpu.md bench/results/scaling_gpu.json "$OUT/" 2>/dev/null
EXPS=${EXPS:-"estimator_variance bayes_logreg bnn_gradient_variance gap_uncertainty map_regression backprop_check curve_fitting vanishing_gradients regularisation cnn_rnn transfer meta_learning nngp_convergence nngp_regression"}
for e in $EXPS; do
  ( start=$(date +%s); timeout ${EXP_TIMEOUT:-300} $PY -m experiments.$e --workdir "$OUT/exp/$e" > "$OUT/exp/$e.log" 2>&1; rc=$?;
    echo "$e rc=$rc seconds=$(( $(date +%s) - start ))" >> "$OUT/exp/summary.txt" ) &
done
timeout 200 $PY -m pytest -q -p no:cacheprovider tests/train_test.py tests/estimators_test.py tests/vi_test.py tests/nngp_test.py > "$OUT/gpu_tests.log" 2>&1
wait
tar czf "$OUT/experiments.tgz" -C "$OUT" exp && rm -rf "$OUT/exp"
ls -la "$OUT"
