"""Benchmark: analytic NTK matrix, jaxbdl.gaussian_processes.nngp vs neural-tangents, side by side.

One command runs both on the same inputs, in float64 and float32:
  * ``jaxbdl.gaussian_processes.nngp.ntk_kernel`` under ``jax.jit`` in this interpreter (main
    ``.venv``, jax 0.10),
  * ``neural_tangents.stax`` (``serial(Dense, act) x depth + Dense``,
    ``kernel_fn(x, None, "ntk")`` under ``jax.jit``) in a worker subprocess of
    the throw-away ``.venv-nt`` (neural-tangents 0.6.5, jax 0.4.23, numpy<2;
    ``bash bench/setup_neural_tangents.sh``), which reads the inputs from and
    writes its matrices and timings to a temporary ``.npz``.
Timing order is jaxbdl, neural-tangents, jaxbdl (A-B-A) so drifting load hits
both; the jaxbdl times of both passes are pooled. Each timing is one warm-up
(compilation) then ``--repeats`` runs with ``block_until_ready``; medians and
minima are reported. Accuracy: max |jaxbdl - neural-tangents| of the NTK and
NNGP matrices in float64 for relu / erf / identity on ``--n-accuracy`` points,
split into diagonal and off-diagonal entries, and both libraries against the
same recursion in ``np.longdouble`` (the arbiter where they differ).

Usage (repository root):
  .venv/bin/python -m bench.ntk_kernel [--n 2000] [--repeats 7]
Writes bench/results/ntk_kernel.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

DEPTH, SIGMA_W2, SIGMA_B2 = 3, 2.0, 0.1
ACTIVATIONS = ("relu", "erf", "identity")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NT_PYTHON = os.path.join(ROOT, ".venv-nt", "bin", "python")


def _time(fn, repeats):
  fn()                                          # warm-up (compiles under jit)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return times


def longdouble_ntk(x: np.ndarray, activation: str) -> np.ndarray:
  """Self-kernel NTK recursion in np.longdouble (80-bit on x86): the arbiter."""
  L = np.longdouble
  xl = x.astype(L)
  pi = L(np.pi)
  k = L(SIGMA_B2) + L(SIGMA_W2) * (xl @ xl.T) / L(x.shape[1])
  theta = k.copy()
  for _ in range(DEPTH):
    dg = np.diag(k).copy()
    a, b = dg[:, None], dg[None, :]
    if activation == "relu":
      norm = np.sqrt(a * b)
      c = np.clip(k / norm, -1, 1)
      t = np.arccos(c)
      kdot = (pi - t) / (2 * pi)
      e = norm / (2 * pi) * (np.sin(t) + (pi - t) * c)
    elif activation == "erf":
      kdot = 4 / pi / np.sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * k * k)
      e = 2 / pi * np.arcsin(2 * k / np.sqrt((1 + 2 * a) * (1 + 2 * b)))
    else:
      kdot, e = np.ones_like(k), k
    k = L(SIGMA_B2) + L(SIGMA_W2) * e
    theta = k + L(SIGMA_W2) * kdot * theta
  return theta.astype(np.float64)


# ----------------------------------------------------------------------------
# Worker: runs inside .venv-nt; never imports jaxbdl.


def worker(path_in: str, path_out: str) -> None:
  import types  # pylint: disable=import-outside-toplevel
  # neural_tangents/__init__ imports .experimental (TensorFlow, not needed).
  sys.modules["neural_tangents.experimental"] = types.ModuleType(
      "neural_tangents.experimental")
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_enable_x64", True)
  import neural_tangents as nt  # pylint: disable=import-outside-toplevel
  from neural_tangents import stax  # pylint: disable=import-outside-toplevel

  data = np.load(path_in)
  repeats = int(data["repeats"])
  acts = {"relu": stax.Relu, "erf": stax.Erf, "identity": stax.Identity}

  def kernel_fn(activation):
    layers = []
    for _ in range(DEPTH):
      layers += [stax.Dense(1, W_std=SIGMA_W2 ** 0.5, b_std=SIGMA_B2 ** 0.5),
                 acts[activation]()]
    layers.append(stax.Dense(1, W_std=SIGMA_W2 ** 0.5, b_std=SIGMA_B2 ** 0.5))
    return jax.jit(stax.serial(*layers)[2], static_argnames="get")

  out = {"nt_version": nt.__version__, "jax_version": jax.__version__,
         "numpy_version": np.__version__}
  for act in ACTIVATIONS:
    k = kernel_fn(act)(data["x_acc"], None, ("nngp", "ntk"))
    out[f"nngp_{act}"] = np.asarray(k.nngp)
    out[f"ntk_{act}"] = np.asarray(k.ntk)
  relu = kernel_fn("relu")
  for name, dtype in (("float64", np.float64), ("float32", np.float32)):
    x = jax.numpy.asarray(data["x"].astype(dtype))
    out[f"times_{name}"] = np.array(_time(
        lambda: relu(x, None, "ntk").block_until_ready(), repeats))
  out["load_average"] = np.array(os.getloadavg())
  np.savez(path_out, **out)


# ----------------------------------------------------------------------------
# Driver: main .venv.


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=2000)
  parser.add_argument("--dim", type=int, default=16)
  parser.add_argument("--n-accuracy", type=int, default=300)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                    "ntk_kernel"))
  args = parser.parse_args()
  if args.n < 2 or args.repeats < 1 or args.n_accuracy < 2:
    raise ValueError("--n and --n-accuracy must be >= 2, --repeats >= 1")
  if not os.path.exists(NT_PYTHON):
    raise SystemExit(f"{NT_PYTHON} missing: run bash bench/setup_neural_tangents.sh")

  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxbdl.gaussian_processes import nngp  # pylint: disable=import-outside-toplevel
  from jaxbdl.evaluation import results as results_lib  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(0)
  x = rng.normal(size=(args.n, args.dim))
  x_acc = rng.normal(size=(args.n_accuracy, args.dim))
  load = {"start": list(os.getloadavg())}

  def time_jaxbdl():
    out = {}
    kernel = jax.jit(nngp.ntk_kernel, static_argnames=("depth", "activation"))
    for name, dtype in (("float64", np.float64), ("float32", np.float32)):
      with jax.enable_x64(dtype == np.float64):
        xj = jnp.asarray(x.astype(dtype))
        out[name] = _time(lambda: kernel(
            xj, None, depth=DEPTH, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2,
            activation="relu").block_until_ready(), args.repeats)
    return out

  first = time_jaxbdl()
  load["after_jaxbdl_1"] = list(os.getloadavg())
  with tempfile.TemporaryDirectory() as tmp:
    path_in, path_out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
    np.savez(path_in, x=x, x_acc=x_acc, repeats=args.repeats)
    proc = subprocess.run([NT_PYTHON, os.path.abspath(__file__), "--worker",
                           path_in, path_out], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
      raise SystemExit("neural-tangents worker failed:\n" + proc.stderr[-3000:])
    nt_out = dict(np.load(path_out))
  load["after_neural_tangents"] = list(os.getloadavg())
  second = time_jaxbdl()
  load["after_jaxbdl_2"] = list(os.getloadavg())

  accuracy = []
  with jax.enable_x64(True):
    for act in ACTIVATIONS:
      kw = dict(depth=DEPTH, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2,
                activation=act)
      ntk = np.asarray(nngp.ntk_kernel(x_acc, None, **kw))
      k = np.asarray(nngp.nngp_kernel(x_acc, x_acc, **kw))
      diff = np.abs(ntk - nt_out[f"ntk_{act}"])
      off = ~np.eye(len(ntk), dtype=bool)
      ref = longdouble_ntk(x_acc, act)
      accuracy.append({
          "activation": act,
          "ntk_max_abs_diff": float(np.max(diff)),
          "ntk_offdiag_max_abs_diff": float(np.max(diff[off])),
          "ntk_diag_max_abs_diff": float(np.max(np.diag(diff))),
          "jaxbdl_vs_longdouble": float(np.max(np.abs(ntk - ref))),
          "neural_tangents_vs_longdouble": float(np.max(np.abs(
              nt_out[f"ntk_{act}"] - ref))),
          "ntk_max_abs": float(np.max(np.abs(ntk))),
          "nngp_max_abs_diff": float(np.max(np.abs(k - nt_out[f"nngp_{act}"]))),
      })

  rows = []
  for name in ("float64", "float32"):
    ours = first[name] + second[name]
    theirs = list(nt_out[f"times_{name}"])
    row = {"precision": name,
           "jaxbdl_median_s": statistics.median(ours),
           "jaxbdl_min_s": min(ours),
           "neural_tangents_median_s": statistics.median(theirs),
           "neural_tangents_min_s": min(theirs)}
    row["speedup_median"] = row["neural_tangents_median_s"] / row["jaxbdl_median_s"]
    row["speedup_min"] = row["neural_tangents_min_s"] / row["jaxbdl_min_s"]
    rows.append(row)

  commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
  dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "jaxbdl",
                               "bench"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip())
  import platform  # pylint: disable=import-outside-toplevel
  env = {
      "n": args.n, "dim": args.dim, "n_accuracy": args.n_accuracy,
      "depth": DEPTH, "sigma_w2": SIGMA_W2, "sigma_b2": SIGMA_B2,
      "timed_activation": "relu", "repeats": args.repeats,
      "git_commit": commit, "git_dirty": dirty,
      "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "command": "python -m bench.ntk_kernel " + " ".join(sys.argv[1:]),
      "platform": platform.platform(), "python": platform.python_version(),
      "cpu_count": os.cpu_count(), "device": str(jax.devices()[0]),
      "jaxbdl_jax": jax.__version__, "jaxbdl_numpy": np.__version__,
      "neural_tangents": str(nt_out["nt_version"]),
      "neural_tangents_jax": str(nt_out["jax_version"]),
      "neural_tangents_numpy": str(nt_out["numpy_version"]),
      "load_average": load,
      "neural_tangents_load_average_at_end": nt_out["load_average"].tolist(),
      "timing": "A-B-A: jaxbdl, neural-tangents (subprocess), jaxbdl; "
                "one warm-up then repeats, block_until_ready",
  }
  table = results_lib.markdown_table(
      rows, ["precision", "jaxbdl_median_s", "jaxbdl_min_s",
             "neural_tangents_median_s", "neural_tangents_min_s",
             "speedup_median", "speedup_min"], precision=4)
  acc_table = results_lib.markdown_table(
      accuracy, ["activation", "ntk_max_abs_diff", "ntk_offdiag_max_abs_diff",
                 "ntk_diag_max_abs_diff", "jaxbdl_vs_longdouble",
                 "neural_tangents_vs_longdouble", "ntk_max_abs",
                 "nngp_max_abs_diff"], precision=3)
  md = (f"# NTK kernel matrix: jaxbdl.gaussian_processes.nngp vs neural-tangents "
        f"{env['neural_tangents']}\n\n"
        f"{args.n} x {args.n}, D={args.dim}, depth {DEPTH}, ReLU, "
        f"sigma_w2={SIGMA_W2}, sigma_b2={SIGMA_B2}; speedup = "
        f"neural-tangents time / jaxbdl time.\n\n{table}\n"
        f"Float64 agreement on {args.n_accuracy} points (depth {DEPTH}):\n\n"
        f"{acc_table}\n"
        f"(`*_vs_longdouble`: against the same recursion in np.longdouble.)\n\n"
        f"- jaxbdl: jax {env['jaxbdl_jax']}; neural-tangents: jax "
        f"{env['neural_tangents_jax']}, numpy {env['neural_tangents_numpy']} "
        f"(.venv-nt); {env['device']}, {env['cpu_count']} CPUs\n"
        f"- load average (1 min) start {load['start'][0]:.1f}, end "
        f"{load['after_jaxbdl_2'][0]:.1f} (shared machine)\n"
        f"- {env['timing']}; commit {commit[:10]}{' (dirty)' if dirty else ''}"
        f", {env['date_utc']}; `{env['command']}`\n")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  results_lib.atomic_write_json(args.out + ".json", {
      "environment": env, "timing": rows, "accuracy_float64": accuracy})
  results_lib.atomic_write_text(args.out + ".md", md)
  print(md)


if __name__ == "__main__":
  if len(sys.argv) == 4 and sys.argv[1] == "--worker":
    worker(sys.argv[2], sys.argv[3])
  else:
    main()
