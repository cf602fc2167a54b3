r"""Benchmark: reparameterised Gamma / Dirichlet gradients, jaxbdl vs NumPyro.

Workload (identical in both libraries): the gradient w.r.t. the
concentration of the Monte Carlo estimate ``mean_s f(z_s)`` of ``E_q[f]``,
``S`` samples, differentiated through the samples (implicit
reparameterisation gradients, Figurnov et al. 2018; both libraries end in
JAX's ``random_gamma_p`` and its implicit JVP):

* ``Gamma``: ``q = Gamma(alpha [D], rate [D])``, ``D = 100`` concentrations
  log-spaced in [0.1, 30], ``f(z) = sum_d (z_d - 1)^2``;
* ``Dirichlet``: ``q = Dirichlet(alpha [B, K])``, ``B = 10`` rows of ``K = 10``
  (log-spaced in [0.1, 30]), ``f(x) = sum_{b,k} w_bk x_bk^2``.

jaxbdl: ``jax.grad(estimators.pathwise.surrogate(f, distributions.Gamma))``
(the training path; per-sample keys, one ``jax.random.gamma`` per sample);
NumPyro 0.22: ``jax.grad`` of ``mean(f(dist.Gamma(a, b).rsample(key, (S,))))``
(one batched draw). Both jitted; the time per call is measured after a
warm-up call, ``repeats`` calls per round, rounds alternate between the two
libraries' worker processes (different environments: NumPyro lives in
``.venv-numpyro`` made by ``bench/setup_numpyro.sh``, on the same jax), so
load hits both alike. Throughput = ``S * D`` (Gamma) or ``S * B`` (Dirichlet)
reparameterised samples (with gradient) per second; medians and minima over
all repeats of all rounds. The mean gradient of one call is also reported as
a sanity check (same distribution, so the two agree within MC error).

Usage (repository root):
  bash bench/setup_numpyro.sh
  .venv/bin/python bench/reparam_vs_numpyro.py [--rounds 3] [--samples 1000]
Outputs: bench/results/reparam_vs_numpyro.{json,md} (with provenance:
commit, versions, platform, command, load average, date) and the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import peers  # bench/peers.py: the scripts run as files, bench/ is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D, B, K = 100, 10, 10


def _problems():
  alpha_g = np.geomspace(0.1, 30.0, D).astype(np.float32)
  rate_g = np.linspace(0.5, 2.0, D).astype(np.float32)
  alpha_d = np.geomspace(0.1, 30.0, B * K).astype(np.float32).reshape(B, K)
  w = np.linspace(-1.0, 1.0, B * K).astype(np.float32).reshape(B, K)
  return alpha_g, rate_g, alpha_d, w


def _time(fn, args, repeats):
  out = fn(*args)
  __import__("jax").block_until_ready(out)  # compile + warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    __import__("jax").block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return times, out


def worker_jaxbdl(args):
  import jax
  import jax.numpy as jnp
  from jaxbdl.gradients import distributions, estimators
  alpha_g, rate_g, alpha_d, w = map(jnp.asarray, _problems())
  s = args.samples

  @jax.jit
  def gamma_grad(a, b, key):
    loss = estimators.pathwise.surrogate(
        lambda z: jnp.sum(jnp.square(z - 1.0)), distributions.Gamma)
    return jax.grad(loss)({"concentration": a, "rate": b}, key,
                          s)["concentration"]

  @jax.jit
  def dirichlet_grad(a, key):
    loss = estimators.pathwise.surrogate(
        lambda x: jnp.sum(w * jnp.square(x)), distributions.Dirichlet)
    return jax.grad(loss)({"concentration": a}, key, s)["concentration"]

  key = jax.random.key(0)
  tg, g = _time(gamma_grad, (alpha_g, rate_g, key), args.repeats)
  td, d = _time(dirichlet_grad, (alpha_d, key), args.repeats)
  return {"gamma_s": tg, "dirichlet_s": td,
          "gamma_grad_mean": float(jnp.mean(g)),
          "dirichlet_grad_mean": float(jnp.mean(d)),
          "jax": jax.__version__, "device": str(jax.devices()[0])}


def worker_numpyro(args):
  import jax
  import jax.numpy as jnp
  import numpyro
  from numpyro import distributions as nd
  alpha_g, rate_g, alpha_d, w = map(jnp.asarray, _problems())
  s = args.samples

  @jax.jit
  def gamma_grad(a, b, key):
    loss = lambda a: jnp.mean(jnp.sum(jnp.square(
        nd.Gamma(a, b).rsample(key, (s,)) - 1.0), axis=-1))
    return jax.grad(loss)(a)

  @jax.jit
  def dirichlet_grad(a, key):
    loss = lambda a: jnp.mean(jnp.sum(
        w * jnp.square(nd.Dirichlet(a).rsample(key, (s,))), axis=(-2, -1)))
    return jax.grad(loss)(a)

  key = jax.random.key(0)
  tg, g = _time(gamma_grad, (alpha_g, rate_g, key), args.repeats)
  td, d = _time(dirichlet_grad, (alpha_d, key), args.repeats)
  return {"gamma_s": tg, "dirichlet_s": td,
          "gamma_grad_mean": float(jnp.mean(g)),
          "dirichlet_grad_mean": float(jnp.mean(d)),
          "jax": jax.__version__, "numpyro": numpyro.__version__,
          "device": str(jax.devices()[0])}


def _run_worker(which, args):
  python = {"jaxbdl": args.jaxbdl_python, "numpyro": args.numpyro_python}[which]
  return peers.run_worker(__file__, which, python, [
      "--samples", args.samples, "--repeats", args.repeats])


def _git(*cmd):
  try:
    return subprocess.run(["git", *cmd], capture_output=True, text=True,
                          cwd=REPO).stdout.strip()
  except OSError:
    return ""


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--worker", choices=("jaxbdl", "numpyro"))
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--samples", type=int, default=1000)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--jaxbdl_python",
                 default=os.path.join(REPO, ".venv", "bin", "python"))
  p.add_argument("--numpyro_python",
                 default=os.path.join(REPO, ".venv-numpyro", "bin", "python"))
  p.add_argument("--out_dir", default=os.path.join(REPO, "bench", "results"))
  args = p.parse_args()
  if args.worker:
    fn = worker_jaxbdl if args.worker == "jaxbdl" else worker_numpyro
    print(json.dumps(fn(args)))
    return
  if min(args.rounds, args.samples, args.repeats) < 1:
    p.error("--rounds, --samples and --repeats must be >= 1")
  load_before = os.getloadavg()
  commit = _git("rev-parse", "HEAD")  # at start: the code that is measured
  dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
  rounds = {"jaxbdl": [], "numpyro": []}
  for r in range(args.rounds):
    for which in ("jaxbdl", "numpyro"):
      rounds[which].append(_run_worker(which, args))
      last = rounds[which][-1]
      print(f"round {r} {which}: gamma {1e3 * np.median(last['gamma_s']):.2f}"
            f" ms, dirichlet {1e3 * np.median(last['dirichlet_s']):.2f} ms",
            file=sys.stderr)
  load_after = os.getloadavg()
  per_call = {"gamma": args.samples * D, "dirichlet": args.samples * B}
  rows, summary = [], {}
  for which, rs in rounds.items():
    for prob, n in per_call.items():
      t = np.concatenate([r[f"{prob}_s"] for r in rs])
      summary[(which, prob)] = s = {
          "ms_median": 1e3 * float(np.median(t)),
          "ms_min": 1e3 * float(np.min(t)),
          "samples_per_s_median": n / float(np.median(t)),
          "grad_mean": float(np.median([r[f"{prob}_grad_mean"] for r in rs]))}
      rows.append({"problem": prob, "library": which,
                   "ms/call (median)": s["ms_median"],
                   "ms/call (min)": s["ms_min"],
                   "samples/s (median)": s["samples_per_s_median"],
                   "mean grad": s["grad_mean"]})
  speedup = {prob: summary[("numpyro", prob)]["ms_median"] /
             summary[("jaxbdl", prob)]["ms_median"] for prob in per_call}
  speedup_min = {prob: summary[("numpyro", prob)]["ms_min"] /
                 summary[("jaxbdl", prob)]["ms_min"] for prob in per_call}
  for row in rows:
    row["jaxbdl speed-up (median)"] = speedup[row["problem"]]
  j, n = rounds["jaxbdl"][0], rounds["numpyro"][0]
  provenance = {
      "commit": commit, "dirty": dirty,
      "jax": j["jax"], "numpyro": n["numpyro"], "device": j["device"],
      "python": platform.python_version(),
      "platform": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "cpus": os.cpu_count(),
      "command": " ".join([os.path.relpath(sys.executable, REPO)
                           if sys.executable.startswith(REPO) else
                           sys.executable] + sys.argv),
      "loadavg_before": load_before, "loadavg_after": load_after,
      "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds")}
  sys.path.insert(0, REPO)
  from jaxbdl.evaluation import results as results_lib
  table = (
      f"Reparameterised (implicit) gradients, S = {args.samples} samples per "
      f"call: Gamma [D = {D}], Dirichlet [B = {B}, K = {K}]; median (and min)"
      f" over {args.rounds} alternating rounds x {args.repeats} calls; "
      f"{provenance['processor']}, {provenance['cpus']} CPUs, device "
      f"{provenance['device']}, jax {provenance['jax']}, numpyro "
      f"{provenance['numpyro']}; load average {load_before[0]:.2f} before, "
      f"{load_after[0]:.2f} after; commit {provenance['commit'][:10]}"
      f"{' (dirty)' if provenance['dirty'] else ''}, "
      f"{provenance['date_utc']}.\n\n"
      f"jaxbdl vs NumPyro (target >= 1x): Gamma **{speedup['gamma']:.2f}x** "
      f"(min-time ratio {speedup_min['gamma']:.2f}x), Dirichlet "
      f"**{speedup['dirichlet']:.2f}x** (min-time ratio "
      f"{speedup_min['dirichlet']:.2f}x).\n\n" +
      results_lib.markdown_table(rows, precision=4))
  os.makedirs(args.out_dir, exist_ok=True)
  results_lib.atomic_write_json(
      os.path.join(args.out_dir, "reparam_vs_numpyro.json"),
      {"rounds": rounds, "rows": rows, "speedup_median": speedup,
       "speedup_min": speedup_min, "provenance": provenance,
       "args": {k: v for k, v in vars(args).items() if k != "worker"}})
  results_lib.atomic_write_text(
      os.path.join(args.out_dir, "reparam_vs_numpyro.md"), table)
  print(table)


if __name__ == "__main__":
  main()
