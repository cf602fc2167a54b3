r"""Benchmark: jaxbdl estimators vs optax.monte_carlo (optax 0.2.6), one run.

What is timed: one Monte Carlo estimate of the gradient of the data term of
the Sec. 8 ELBO (Mohamed et al. 2020), ``E_q[sum_n log p(y_n | x_n, w)]``
for Bayesian logistic regression on breast cancer (455 training examples,
``D = 31`` weights incl. bias), with respect to the mean-field Gaussian
``q = N(loc, diag(exp(log_scale))^2)``: 62 numbers per estimate, averaged over
``S`` samples. Estimators: pathwise, score function, measure-valued (coupled).

The two libraries cannot share a process (optax 0.2.6 is the last release
with ``optax.monte_carlo``; the main environment has optax 0.2.8), so this
driver (main ``.venv``) writes the data and the evaluation point to a
temporary ``.npz`` and runs worker subprocesses back to back, alternating
``jaxbdl, optax, jaxbdl, optax, ...`` (``--rounds``) so that a change in
machine load hits both: ``.venv/bin/python`` with ``PYTHONPATH`` = repo for
jaxbdl, ``.venv-optax026/bin/python`` (``bench/setup_optax026.sh``) for optax.
Each worker times ``jax.jit``-ed functions returning the averaged gradient
(both expressed with respect to ``(loc, log_scale)``: optax's native
parameters; jaxbdl's ``scale`` gradient is multiplied by ``scale`` inside the
jitted function), after a warm-up call, with ``block_until_ready``, a fresh key
per call, and reports the median over calls; the driver takes the median over
rounds. The same cost function (a plain-JAX Bernoulli log-likelihood) is used
by both.

Same computation check: each worker also returns the mean and standard error
of ``--check_samples`` per-sample estimates; the driver reports, per
estimator, ``max_j |mean_jaxbdl - mean_optax|_j / sqrt(se_j^2 + se'_j^2)``
over the 62 coordinates, which must stay below 4.5 (two-sided normal tail
7e-6 per coordinate, ~4e-4 over 62).

Usage (repository root):
  bash bench/setup_optax026.sh
  .venv/bin/python bench/estimators_vs_optax.py [--sample_counts 1,10,100,1000]
  .venv/bin/python bench/estimators_vs_optax.py --mvd_chunking 1000
      # jaxbdl only: measure-valued as one vmap vs lax.map over sample chunks
Outputs: bench/results/estimators_vs_optax.{json,md}, and the table on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ESTIMATORS = ("pathwise", "score_function", "measure_valued")
Z_LIMIT = 4.5


# --------------------------------------------------------------------------
# Worker side (runs under either environment; imports only jax + numpy at the
# top, the library inside).


def _cost_fn(x, y):
  import jax
  import jax.numpy as jnp

  def f(w):  # sum_n log p(y_n | x_n, w), w [D]
    logits = x @ w
    return jnp.sum(y * jax.nn.log_sigmoid(logits)
                   + (1.0 - y) * jax.nn.log_sigmoid(-logits))

  return f


def _jaxbdl_fns(f, name):
  """(grad(params, key, S) -> (g_loc, g_log_scale), per_sample(...))."""
  from jaxbdl.gradients import distributions, estimators
  est = getattr(estimators, name)
  grad_fn = est(f, distributions.Normal)
  samples_fn = est.samples(f, distributions.Normal)

  def grad(loc, log_scale, key, s):
    scale = jnp_exp(log_scale)
    g = grad_fn({"loc": loc, "scale": scale}, key, s)
    return g["loc"], g["scale"] * scale

  def per_sample(loc, log_scale, key, s):
    scale = jnp_exp(log_scale)
    g = samples_fn({"loc": loc, "scale": scale}, key, s)
    return g["loc"], g["scale"] * scale[None]

  return grad, per_sample


def _optax_fns(f, name):
  from optax import monte_carlo
  from optax._src import utils
  jac = {"pathwise": monte_carlo.pathwise_jacobians,
         "score_function": monte_carlo.score_function_jacobians,
         "measure_valued": monte_carlo.measure_valued_jacobians}[name]

  def per_sample(loc, log_scale, key, s):
    j_loc, j_log_scale = jac(f, [loc, log_scale], utils.multi_normal, key, s)
    return j_loc, j_log_scale

  def grad(loc, log_scale, key, s):
    j_loc, j_log_scale = per_sample(loc, log_scale, key, s)
    return j_loc.mean(0), j_log_scale.mean(0)

  return grad, per_sample


def jnp_exp(a):
  import jax.numpy as jnp
  return jnp.exp(a)


def _time_call(fn, args_for_call, min_calls, max_calls, budget_s):
  """Median wall and process-CPU seconds per call (after a warm-up call).

  CPU time (all threads of the worker) is less sensitive than wall time to
  other processes competing for the cores.
  """
  import jax
  jax.block_until_ready(fn(*args_for_call(0)))
  walls, cpus, i, start = [], [], 1, time.perf_counter()
  while i <= max_calls and (len(walls) < min_calls or
                            time.perf_counter() - start < budget_s):
    args = args_for_call(i)
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
    i += 1
  return {"median_s": float(np.median(walls)), "min_s": float(np.min(walls)),
          "cpu_median_s": float(np.median(cpus)), "calls": len(walls)}


def _flops(compiled):
  """XLA's static cost estimate of one call (load-independent), or NaN."""
  try:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost.get("flops", float("nan")))
  except Exception:  # pylint: disable=broad-except
    return float("nan")


def worker(impl, data_path, sample_counts, estimators, check_samples,
           budget_s, out_path):
  import functools
  import jax
  import jax.numpy as jnp
  import warnings
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  d = np.load(data_path)
  x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
  loc, log_scale = jnp.asarray(d["loc"]), jnp.asarray(d["log_scale"])
  f = _cost_fn(x, y)
  make = _jaxbdl_fns if impl == "jaxbdl" else _optax_fns
  out = {"impl": impl, "jax": jax.__version__, "timings": [], "check": {}}
  if impl == "optax":
    import optax
    out["optax"] = optax.__version__
  root = jax.random.key(int(d["seed"]))
  for name in estimators:
    grad, per_sample = make(f, name)
    for s in sample_counts:
      fn = jax.jit(functools.partial(grad, s=s))
      t_compile = time.perf_counter()
      compiled = fn.lower(loc, log_scale, root).compile()
      t_compile = time.perf_counter() - t_compile
      keys = jax.random.split(jax.random.fold_in(root, s), 10_000)
      timing = _time_call(compiled, lambda i: (loc, log_scale, keys[i]),
                          min_calls=5, max_calls=2000, budget_s=budget_s)
      out["timings"].append(dict(timing, estimator=name, num_samples=s,
                                 compile_s=t_compile,
                                 flops=_flops(compiled)))
    ps = jax.jit(functools.partial(per_sample, s=check_samples))
    g_loc, g_ls = ps(loc, log_scale, jax.random.fold_in(root, 7))
    g = np.concatenate([np.asarray(g_loc), np.asarray(g_ls)], axis=1)
    g = g.astype(np.float64)
    out["check"][name] = {
        "mean": g.mean(0).tolist(),
        "se": (g.std(0, ddof=1) / math.sqrt(g.shape[0])).tolist(),
        "first": g[:16].tolist()}
  with open(out_path, "w") as fh:
    json.dump(out, fh)


# --------------------------------------------------------------------------
# Driver side (main .venv).


def _prepare_data(path, seed):
  sys.path.insert(0, REPO)
  from experiments import bayes_logreg
  d = bayes_logreg.load_data(split_seed=0, test_fraction=0.2)
  rng = np.random.default_rng(seed)
  dim = d["x_train"].shape[1]
  # An evaluation point like a partly trained q: loc ~ N(0, 0.5^2), std 0.2.
  np.savez(path, x=d["x_train"].astype(np.float32),
           y=d["y_train"].astype(np.float32),
           loc=(0.5 * rng.standard_normal(dim)).astype(np.float32),
           log_scale=np.full(dim, math.log(0.2), np.float32), seed=seed)
  return d["x_train"].shape


def _run_worker(impl, args, data_path, tmp):
  python = {"jaxbdl": os.path.join(REPO, ".venv", "bin", "python"),
            "optax": os.path.join(REPO, ".venv-optax026", "bin", "python")}[
                impl]
  if not os.path.exists(python):
    hint = (" (run: bash bench/setup_optax026.sh)" if impl == "optax" else "")
    raise FileNotFoundError(f"{python} not found{hint}")
  out_path = os.path.join(tmp, f"{impl}_{time.time_ns()}.json")
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO if impl == "jaxbdl" else ""
  # Later rounds reuse the executables of the first (compile time is not
  # what is measured; it is reported from each worker's own compile).
  env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tmp, f"cache_{impl}")
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  cmd = [python, os.path.abspath(__file__), "--worker", impl,
         "--data", data_path, "--out", out_path,
         "--sample_counts", ",".join(map(str, args.sample_counts)),
         "--estimators", ",".join(args.estimators),
         "--check_samples", str(args.check_samples),
         "--budget_s", str(args.budget_s)]
  subprocess.run(cmd, check=True, env=env, cwd=REPO)
  with open(out_path) as fh:
    return json.load(fh)


def _load_average():
  try:
    return os.getloadavg()[0]
  except OSError:
    return float("nan")


def drive(args):
  sys.path.insert(0, REPO)
  from jaxbdl.evaluation import results as results_lib
  with tempfile.TemporaryDirectory() as tmp:
    data_path = os.path.join(tmp, "data.npz")
    shape = _prepare_data(data_path, args.seed)
    runs = {"jaxbdl": [], "optax": []}
    loads = []
    for r in range(args.rounds):
      for impl in ("jaxbdl", "optax"):
        loads.append(_load_average())
        print(f"round {r + 1}/{args.rounds}: {impl} ...", flush=True)
        runs[impl].append(_run_worker(impl, args, data_path, tmp))
  rows = []
  for name in args.estimators:
    for s in args.sample_counts:
      med = {}
      for impl in ("jaxbdl", "optax"):
        per_round = [next(t for t in run["timings"] if t["estimator"] == name
                          and t["num_samples"] == s) for run in runs[impl]]
        for field in ("median_s", "cpu_median_s", "flops"):
          med[impl, field] = float(np.median([t[field] for t in per_round]))
        med[impl, "compile_s"] = per_round[0]["compile_s"]  # cold cache
      rows.append({
          "estimator": name, "num_samples": s,
          "jaxbdl_ms": 1e3 * med["jaxbdl", "median_s"],
          "optax_ms": 1e3 * med["optax", "median_s"],
          "jaxbdl_est_per_s": 1.0 / med["jaxbdl", "median_s"],
          "optax_est_per_s": 1.0 / med["optax", "median_s"],
          "speedup": med["optax", "median_s"] / med["jaxbdl", "median_s"],
          "jaxbdl_cpu_ms": 1e3 * med["jaxbdl", "cpu_median_s"],
          "optax_cpu_ms": 1e3 * med["optax", "cpu_median_s"],
          "cpu_speedup": (med["optax", "cpu_median_s"]
                          / med["jaxbdl", "cpu_median_s"]),
          "jaxbdl_mflops": 1e-6 * med["jaxbdl", "flops"],
          "optax_mflops": 1e-6 * med["optax", "flops"],
          "jaxbdl_compile_s": med["jaxbdl", "compile_s"],
          "optax_compile_s": med["optax", "compile_s"]})
  checks = []
  for name in args.estimators:
    a = runs["jaxbdl"][0]["check"][name]
    b = runs["optax"][0]["check"][name]
    ma, mb = np.array(a["mean"]), np.array(b["mean"])
    z = np.abs(ma - mb) / np.sqrt(np.square(a["se"]) + np.square(b["se"]))
    fa, fb = np.array(a["first"]), np.array(b["first"])
    checks.append({"estimator": name, "max_abs_z": float(z.max()),
                   "rel_l2_diff": float(np.linalg.norm(ma - mb)
                                        / np.linalg.norm(mb)),
                   # Same key, same draws? (true for pathwise and score
                   # function: both libraries draw the same normals.)
                   "per_sample_max_rel_diff": float(
                       np.max(np.abs(fa - fb)) / np.max(np.abs(fb))),
                   "same_mean": bool(z.max() < Z_LIMIT)})
  res = {
      "what": "one S-sample estimate of grad_(loc, log_scale) E_q[log p(y|X,w)]"
              ", BLR breast cancer, D=31 (62 gradient entries)",
      "num_train": int(shape[0]), "dim": int(shape[1]),
      "rounds": args.rounds, "budget_s_per_case": args.budget_s,
      "machine": {"platform": platform.platform(),
                  "cpu_count": os.cpu_count(),
                  "load_average_1min_at_worker_starts": loads},
      "versions": {"jaxbdl_env_jax": runs["jaxbdl"][0]["jax"],
                   "optax_env_jax": runs["optax"][0]["jax"],
                   "optax": runs["optax"][0].get("optax")},
      "rows": rows, "mean_checks": checks,
      "check_samples": args.check_samples, "z_limit": Z_LIMIT,
      "raw": runs,
  }
  table = results_lib.markdown_table(
      rows, ["estimator", "num_samples", "jaxbdl_ms", "optax_ms",
             "jaxbdl_est_per_s", "optax_est_per_s", "speedup",
             "jaxbdl_cpu_ms", "optax_cpu_ms", "cpu_speedup", "jaxbdl_mflops",
             "optax_mflops", "jaxbdl_compile_s", "optax_compile_s"],
      precision=3)
  check_table = results_lib.markdown_table(
      checks, ["estimator", "max_abs_z", "rel_l2_diff",
               "per_sample_max_rel_diff", "same_mean"], precision=3)
  text = (
      "# jaxbdl estimators vs optax.monte_carlo (optax "
      f"{res['versions']['optax']}, jax {res['versions']['optax_env_jax']})"
      "\n\nOne S-sample estimate of the gradient of E_q[log p(y|X,w)] w.r.t. "
      "(loc, log_scale) of a mean-field Gaussian, Bayesian logistic "
      f"regression on breast cancer ({shape[0]} examples, D = {shape[1]}). "
      "Median wall time per jitted call (fresh key per call, after warm-up), "
      f"median over {args.rounds} alternating rounds; speedup = optax time "
      f"/ jaxbdl time (> 1: jaxbdl faster); cpu_* use the worker's process "
      f"CPU time (all threads), less sensitive to competing processes; "
      f"mflops is XLA's static cost estimate per call. Machine: "
      f"{os.cpu_count()} CPU cores, 1-min load average at worker starts {np.round(loads, 1)}."
      f"\n\n{table}\nSame computation: mean of {args.check_samples} "
      f"per-sample estimates from each library, max over the 62 "
      f"coordinates of |difference| / combined SE (limit {Z_LIMIT}); "
      f"per_sample_max_rel_diff compares the first 16 per-sample estimates "
      f"for the same key (~1e-7: identical draws and arithmetic).\n\n"
      f"{check_table}")
  os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
  base = os.path.join(REPO, "bench", "results", "estimators_vs_optax")
  results_lib.atomic_write_json(
      base + ".json", {**res, "provenance": results_lib.provenance()})
  results_lib.atomic_write_text(base + ".md", text)
  print(text)
  if not all(c["same_mean"] for c in checks):
    raise SystemExit("mean gradients differ between the libraries: see "
                     "mean_checks")


def mvd_chunking(sample_count, chunks, repeats=4):
  """jaxbdl measure-valued at ``S`` samples: one vmap vs lax.map over chunks.

  Prints median CPU/wall seconds per call; the calls of the variants
  alternate, so machine load hits all of them alike.
  """
  import functools
  import jax
  import jax.numpy as jnp
  sys.path.insert(0, REPO)
  from experiments import bayes_logreg
  from jaxbdl.gradients import distributions, estimators
  d = bayes_logreg.load_data(split_seed=0, test_fraction=0.2)
  f = _cost_fn(jnp.asarray(d["x_train"]),
               jnp.asarray(d["y_train"], jnp.float32))
  dim = d["x_train"].shape[1]
  params = {"loc": jnp.full(dim, 0.5), "scale": jnp.full(dim, 0.2)}
  grad_fn = estimators.measure_valued(f, distributions.Normal)

  def chunked(key, chunk):
    keys = jax.random.split(key, sample_count // chunk)
    out = jax.lax.map(lambda k: grad_fn(params, k, chunk), keys)
    return jax.tree.map(lambda a: a.mean(0), out)

  variants = {f"vmap over {sample_count}":
              jax.jit(lambda k: grad_fn(params, k, sample_count))}
  for c in chunks:
    if sample_count % c:
      raise ValueError(f"chunk {c} does not divide {sample_count}")
    variants[f"lax.map {sample_count // c} x vmap {c}"] = jax.jit(
        functools.partial(chunked, chunk=c))
  keys = jax.random.split(jax.random.key(0), repeats + 1)
  for fn in variants.values():
    jax.block_until_ready(fn(keys[0]))
  times = {n: [] for n in variants}
  for r in range(repeats):
    for name, fn in variants.items():
      c0, t0 = time.process_time(), time.perf_counter()
      jax.block_until_ready(fn(keys[r + 1]))
      times[name].append((time.process_time() - c0,
                          time.perf_counter() - t0))
  for name, v in times.items():
    v = np.array(v)
    print(f"{name:30s} CPU {np.median(v[:, 0]):.3f} s  wall "
          f"{np.median(v[:, 1]):.3f} s (median of {repeats})")


def _ints(s):
  vals = [int(v) for v in s.split(",") if v]
  if not vals or min(vals) < 1:
    raise argparse.ArgumentTypeError(f"need positive ints, got {s!r}")
  return vals


def _names(s):
  vals = [v for v in s.split(",") if v]
  bad = [v for v in vals if v not in ESTIMATORS]
  if bad or not vals:
    raise argparse.ArgumentTypeError(f"unknown estimator(s) {bad}; choose "
                                     f"from {list(ESTIMATORS)}")
  return vals


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sample_counts", type=_ints, default=[1, 10, 100, 1000])
  p.add_argument("--estimators", type=_names, default=list(ESTIMATORS))
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--budget_s", type=float, default=1.0,
                 help="timing budget per (estimator, S) case and worker")
  p.add_argument("--check_samples", type=int, default=2000)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--mvd_chunking", type=int, default=0,
                 help="only compare jaxbdl measure-valued at this S: one "
                      "vmap vs lax.map over chunks of 10/50/100 samples")
  p.add_argument("--worker", choices=("jaxbdl", "optax"), default=None)
  p.add_argument("--data", default=None)
  p.add_argument("--out", default=None)
  args = p.parse_args()
  if args.rounds < 1 or args.check_samples < 10 or args.budget_s <= 0:
    p.error("need --rounds >= 1, --check_samples >= 10, --budget_s > 0")
  if args.mvd_chunking:
    mvd_chunking(args.mvd_chunking, [c for c in (10, 50, 100)
                                     if args.mvd_chunking % c == 0])
  elif args.worker:
    worker(args.worker, args.data, args.sample_counts, args.estimators,
           args.check_samples, args.budget_s, args.out)
  else:
    drive(args)


if __name__ == "__main__":
  main()
