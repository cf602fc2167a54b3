"""Benchmark: NNGP kernel matrix, 2,000 x 2,000 inputs, depth 3, ReLU.

Compares, in ONE process and on the same inputs:
  * ``jaxbdl.gaussian_processes.nngp.nngp_kernel`` under ``jax.jit`` (float32, and float64 via
    ``jax.enable_x64``),
  * the ``neural-tangents`` library (``stax.serial(Dense, Relu) x 3 + Dense``,
    ``kernel_fn(x, None, "nngp")``) if it imports in this interpreter,
  * otherwise a direct NumPy implementation of the same recursion (float64 and
    float32) as the reference.
Reports the median (and min) wall time of ``--repeats`` runs after one warm-up
(``block_until_ready``), the max |difference| of each matrix from the NumPy
float64 one, and the speed ratio against NumPy float64.

neural-tangents: 0.6.5 does not import on jax 0.10, so
``bash bench/setup_neural_tangents.sh`` now builds ``.venv-nt/`` on jax 0.4.23
(numpy<2) and the side-by-side comparison (NNGP and NTK, float64 agreement and
timing) lives in ``bench/ntk_kernel.py``, which runs neural-tangents in a
worker subprocess. Here ``import neural_tangents`` fails in the main venv and
the error is recorded in the results.

Usage (repository root):
  .venv/bin/python -m bench.nngp_kernel [--n 2000] [--repeats 7]
Writes bench/results/nngp_kernel.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                "..")))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxbdl.gaussian_processes import nngp  # noqa: E402
from jaxbdl.evaluation import results as results_lib  # noqa: E402

DEPTH, SIGMA_W2, SIGMA_B2 = 3, 2.0, 0.1
_SETUP_LOG = os.path.join(os.path.dirname(__file__), "results",
                          "neural_tangents_setup.log")


def numpy_nngp_relu(x: np.ndarray, depth: int, sigma_w2: float,
                    sigma_b2: float) -> np.ndarray:
  """Direct NumPy recursion (Lee et al. 2018 Eq. 4, Cho & Saul 2009 Eq. 6), [N, N]."""
  dtype = x.dtype
  k = sigma_b2 + sigma_w2 * (x @ x.T) / x.shape[1]
  diag = np.diagonal(k).copy()
  for _ in range(depth):
    norm = np.sqrt(np.outer(diag, diag))
    cos = np.clip(k / norm, -1.0, 1.0)
    theta = np.arccos(cos)
    k = sigma_b2 + sigma_w2 * norm / (2 * np.pi) * (
        np.sin(theta) + (np.pi - theta) * cos)
    diag = sigma_b2 + sigma_w2 * diag / 2
  return k.astype(dtype, copy=False)


def _time(fn, repeats: int) -> tuple[float, float, np.ndarray]:
  out = fn()                                   # warm-up (compiles under jit)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), min(times), np.asarray(out)


def _neural_tangents_kernel_fn():
  """Returns (callable or None, status string)."""
  try:
    from neural_tangents import stax  # pylint: disable=import-outside-toplevel
  except Exception as e:  # noqa: BLE001 - record any import failure verbatim.
    status = f"import failed in {sys.executable}: {type(e).__name__}: {e}"
    if os.path.exists(_SETUP_LOG):
      with open(_SETUP_LOG) as f:
        lines = [l.rstrip() for l in f if l.strip()
                 and not l.startswith("WARNING: Location")]
      errors = [l for l in lines if "Error" in l or "exit status" in l
                or l.startswith("neural-tangents")]
      status += " | .venv-nt (bash bench/setup_neural_tangents.sh): " + \
          " ; ".join(errors[-4:])
    return None, status
  layers = []
  for _ in range(DEPTH):
    layers += [stax.Dense(1, W_std=SIGMA_W2 ** 0.5, b_std=SIGMA_B2 ** 0.5),
               stax.Relu()]
  layers.append(stax.Dense(1, W_std=SIGMA_W2 ** 0.5, b_std=SIGMA_B2 ** 0.5))
  _, _, kernel_fn = stax.serial(*layers)
  kernel_fn = jax.jit(kernel_fn, static_argnames="get")
  return (lambda x: kernel_fn(x, None, "nngp")), "imported"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=2000)
  parser.add_argument("--dim", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                    "results", "nngp_kernel"))
  args = parser.parse_args()
  if args.n < 2 or args.repeats < 1:
    raise ValueError("--n must be >= 2 and --repeats >= 1")

  x64 = np.random.default_rng(0).normal(size=(args.n, args.dim))
  x32 = x64.astype(np.float32)
  rows = []

  ref_med, ref_min, ref = _time(
      lambda: numpy_nngp_relu(x64, DEPTH, SIGMA_W2, SIGMA_B2), args.repeats)
  rows.append(("numpy float64 (reference)", ref_med, ref_min, ref))
  med, mn, out = _time(
      lambda: numpy_nngp_relu(x32, DEPTH, SIGMA_W2, SIGMA_B2), args.repeats)
  rows.append(("numpy float32", med, mn, out))

  kernel = jax.jit(nngp.nngp_kernel, static_argnames=("depth", "activation"))
  xj = jnp.asarray(x32)
  med, mn, out = _time(lambda: kernel(
      xj, xj, depth=DEPTH, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2,
      activation="relu").block_until_ready(), args.repeats)
  rows.append(("jaxbdl.gaussian_processes.nngp jit float32", med, mn, out))
  with jax.enable_x64(True):
    kernel64 = jax.jit(nngp.nngp_kernel,
                       static_argnames=("depth", "activation"))
    xj64 = jnp.asarray(x64)
    med, mn, out = _time(lambda: kernel64(
        xj64, xj64, depth=DEPTH, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2,
        activation="relu").block_until_ready(), args.repeats)
    rows.append(("jaxbdl.gaussian_processes.nngp jit float64", med, mn, out))

  nt_fn, nt_status = _neural_tangents_kernel_fn()
  if nt_fn is not None:
    try:
      med, mn, out = _time(lambda: nt_fn(xj).block_until_ready(), args.repeats)
      rows.append(("neural-tangents stax jit float32", med, mn, out))
    except Exception:  # noqa: BLE001
      nt_status = "imported but failed: " + traceback.format_exc(limit=2)

  table_rows, records = [], []
  for name, med, mn, out in rows:
    diff = float(np.max(np.abs(out.astype(np.float64) - ref)))
    record = {"implementation": name, "median_s": med, "min_s": mn,
              "speedup_vs_numpy_float64": ref_med / med,
              "max_abs_diff_vs_numpy_float64": diff,
              "max_rel_diff_vs_numpy_float64": diff / float(np.max(np.abs(ref)))}
    records.append(record)
    table_rows.append(record)
  env = {
      "n": args.n, "dim": args.dim, "depth": DEPTH, "activation": "relu",
      "sigma_w2": SIGMA_W2, "sigma_b2": SIGMA_B2, "repeats": args.repeats,
      "python": platform.python_version(), "jax": jax.__version__,
      "numpy": np.__version__, "device": str(jax.devices()[0]),
      "cpu_count": os.cpu_count(),
      "load_average_at_end": list(os.getloadavg()),
      "neural_tangents": nt_status,
      "command": "python -m bench.nngp_kernel " + " ".join(sys.argv[1:]),
  }
  table = results_lib.markdown_table(
      table_rows, ["implementation", "median_s", "min_s",
                   "speedup_vs_numpy_float64", "max_abs_diff_vs_numpy_float64"],
      precision=4)
  md = (f"# NNGP kernel benchmark: {args.n} x {args.n}, D={args.dim}, depth "
        f"{DEPTH}, ReLU\n\n{table}\n"
        f"- neural-tangents: {nt_status}\n"
        f"- jax {jax.__version__}, numpy {np.__version__}, "
        f"{env['device']}, {env['cpu_count']} CPUs, load average at end "
        f"{env['load_average_at_end'][0]:.1f}\n"
        f"- median / min of {args.repeats} runs after one warm-up; "
        f"`{env['command']}`\n")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  results_lib.atomic_write_json(args.out + ".json",
                                {"environment": env, "results": records,
                                 "provenance": results_lib.provenance()})
  results_lib.atomic_write_text(args.out + ".md", md)
  print(md)


if __name__ == "__main__":
  main()
