#!/usr/bin/env bash
# The UCI benchmark with per-split hyper-parameter selection (--grid_search),
# every data set, on a GPU machine (the `device` tool here):
#   bash bench/uci_grid_gpu.sh DATA_DIR OUT_DIR [METHODS] [EXTRA FLAGS...]
# DATA_DIR: root of the UCI folders (a copy of ../shared/data/uci: the shared
# folder does not travel to the device machine). One workdir per data set,
# appended to OUT_DIR/uci_grid.tar as it finishes, plus the combined log.
set -u
DATA=$1; OUT=$2; METHODS=${3:-mc_dropout,ensemble}; shift 3 || shift $#
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
PY=${PY:-python3}
$PY -c "import ml_collections" 2>/dev/null || $PY -m pip install -q --no-deps --no-index .whl/*.whl
mkdir -p "$OUT/w"
{ nvidia-smi -L; $PY -c "import jax; print('jax', jax.__version__, jax.devices())"; } > "$OUT/uci_grid.log" 2>&1
for d in ${DATASETS:-concrete kin8nm power-plant wine-quality-red energy yacht}; do
  start=$(date +%s)
  timeout ${DS_TIMEOUT:-300} $PY -m experiments.uci_regression --workdir "$OUT/w/$d" \
      --data_dir "$DATA" --dataset "$d" --method "$METHODS" --grid_search "$@" \
      >> "$OUT/uci_grid.log" 2>&1
  echo "$d rc=$? seconds=$(( $(date +%s) - start ))" | tee -a "$OUT/uci_grid.log"
  tar rf "$OUT/uci_grid.tar" -C "$OUT/w" "$d"  # per data set: survives a time-out
done
rm -rf "$OUT/w"
grep -h "RMSE .* LL" "$OUT/uci_grid.log" | sed 's/.*uci_regression.py:[0-9]*\] //'
