r"""Benchmark: NUTS on a 1 x 50 BNN, jaxbdl (BlackJAX) vs NumPyro, ESS per second.

The model (identical in both): the 1-D gap data of
``jaxbdl.data.gap_regression`` (N = 100, seed 0), ``y ~ N(f(x; W), 0.1^2)``
with ``f`` a one-hidden-layer tanh network of 50 units (151 weights), prior
``N(0, 1)`` on every weight and bias. Both run NUTS with Stan-style window
adaptation of the step size and a diagonal mass matrix (target acceptance
0.8, tree depth <= 10), ``C`` chains vectorised in one program (jaxbdl:
``jax.vmap`` in ``jaxbdl.bayes.hmc``; NumPyro: ``chain_method="vectorized"``),
the same number of warm-up and kept transitions. Initial positions differ
(jaxbdl: Flax's initialiser; NumPyro: its default ``init_to_uniform``).

Network weights are not identifiable (hidden-unit permutations and sign
flips), so ESS and R-hat are computed for what is: the network output
``f(x*)`` at 10 grid inputs in ``[-1.5, 1.5]``, from each library's draws,
with ONE implementation (BlackJAX's ``effective_sample_size`` and split
``rhat``) for both. ESS per second = min over the 10 outputs of ESS divided
by the wall time of a second ``run`` of the same compiled sampler (a new
key: warm-up + sampling, compile excluded); the first call's time (compile
included) is reported too. Each worker runs in its own environment (NumPyro
0.22 in ``.venv-numpyro``, ``bench/setup_numpyro.sh``, on the same jax),
back to back, alternating, ``--rounds`` times.

Usage (repository root):
  bash bench/setup_numpyro.sh
  /path/to/main/.venv/bin/python bench/nuts_vs_numpyro.py [--rounds 2]
Outputs: bench/results/nuts_vs_numpyro.{json,md} and the table on stdout.
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
H, NOISE, PRIOR = 50, 0.1, 1.0
X_STAR = np.linspace(-1.5, 1.5, 10, dtype=np.float32)[:, None]


def _data_file():
  """The gap data as an npz in a temporary directory (read by both workers)."""
  import tempfile
  sys.path.insert(0, REPO)
  import jax
  from jaxbdl import data as data_lib
  d = data_lib.gap_regression(jax.random.key(0), 100, NOISE)
  path = os.path.join(tempfile.mkdtemp(), "nuts_vs_numpyro_data.npz")
  np.savez(path, x=np.asarray(d.x), y=np.asarray(d.y))
  return path


def _forward(w1, b1, w2, b2, x):
  """``f(x) [..., M]`` for draws with leading axes ``[...]``."""
  h = np.tanh(np.einsum("md,...dh->...mh", x, w1) + b1[..., None, :])
  return np.einsum("...mh,...ho->...mo", h, w2)[..., 0] + b2


def worker_jaxbdl(args):
  import jax
  import jax.numpy as jnp
  from jax.flatten_util import ravel_pytree
  from jaxbdl.bayes import hmc, likelihoods, priors
  from jaxbdl.bayes import posterior as post_lib
  d = np.load(args.data)
  data = {"x": jnp.asarray(d["x"]), "y": jnp.asarray(d["y"])}
  model = post_lib.mlp_model((H,), 1, lambda hp: likelihoods.gaussian(NOISE),
                             lambda hp: priors.gaussian(PRIOR),
                             activation="tanh")
  hp = {"temperature": 1.0}
  trees = hmc.init_positions(jax.random.key(1), model, hp, data["x"],
                             args.chains)
  one = jax.tree.map(lambda a: a[0], trees)
  _, unravel = ravel_pytree(one)
  logp = hmc.log_density_fn(model, hp, data, {})
  hmc.check_initial_log_density(logp, one)
  flat = jax.vmap(lambda t: ravel_pytree(t)[0])(trees)
  run = jax.jit(lambda k, p: hmc.run_nuts(
      k, lambda w: logp(unravel(w)), p, num_warmup=args.warmup,
      num_samples=args.samples, max_num_doublings=10))
  times, out = [], None
  for i in range(2):
    t0 = time.perf_counter()
    out = jax.block_until_ready(run(jax.random.key(10 + i), flat))
    times.append(time.perf_counter() - t0)
  params = jax.vmap(jax.vmap(unravel))(out.positions)["params"]
  f = _forward(np.asarray(params["Dense_0"]["kernel"]),
               np.asarray(params["Dense_0"]["bias"]),
               np.asarray(params["Dense_1"]["kernel"]),
               np.asarray(params["Dense_1"]["bias"]), X_STAR)
  return {"f": f.tolist(), "first_call_s": times[0], "second_call_s": times[1],
          "divergent": int(out.num_divergent.sum()),
          "mean_leapfrog": float(out.num_integration_steps.mean()),
          "jax": jax.__version__, "device": str(jax.devices()[0])}


def worker_numpyro(args):
  import jax
  import jax.numpy as jnp
  import numpyro
  import numpyro.distributions as dist
  from numpyro.infer import MCMC, NUTS
  d = np.load(args.data)
  x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])

  def model(x, y):
    w1 = numpyro.sample("w1", dist.Normal(0.0, PRIOR).expand([1, H]))
    b1 = numpyro.sample("b1", dist.Normal(0.0, PRIOR).expand([H]))
    w2 = numpyro.sample("w2", dist.Normal(0.0, PRIOR).expand([H, 1]))
    b2 = numpyro.sample("b2", dist.Normal(0.0, PRIOR).expand([1]))
    f = (jnp.tanh(x @ w1 + b1) @ w2)[:, 0] + b2[0]
    numpyro.sample("y", dist.Normal(f, NOISE), obs=y)

  mcmc = MCMC(NUTS(model, target_accept_prob=0.8, max_tree_depth=10),
              num_warmup=args.warmup, num_samples=args.samples,
              num_chains=args.chains, chain_method="vectorized",
              progress_bar=False)
  times = []
  for i in range(2):
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(10 + i), x, y, extra_fields=("diverging",
                                                         "num_steps"))
    jax.block_until_ready(mcmc.get_samples())
    times.append(time.perf_counter() - t0)
  s = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True)
       .items()}
  f = _forward(s["w1"], s["b1"], s["w2"], s["b2"], X_STAR)
  extra = mcmc.get_extra_fields()
  return {"f": f.tolist(), "first_call_s": times[0], "second_call_s": times[1],
          "divergent": int(np.asarray(extra["diverging"]).sum()),
          "mean_leapfrog": float(np.asarray(extra["num_steps"]).mean()),
          "jax": jax.__version__, "numpyro": numpyro.__version__,
          "device": str(jax.devices()[0])}


def _run_worker(which, args):
  python = {"jaxbdl": args.jaxbdl_python, "numpyro": args.numpyro_python}[which]
  load = os.getloadavg()[0]
  res = peers.run_worker(__file__, which, python, [
      "--data", args.data, "--chains", args.chains, "--warmup", args.warmup,
      "--samples", args.samples])
  res["loadavg_1min_at_start"] = load
  return res


def _diagnose(res):
  import jax
  from jaxbdl.bayes import hmc
  f = np.asarray(res.pop("f"), np.float32)      # [C, S, M]
  with jax.numpy_rank_promotion("allow"):
    diag = hmc.convergence(f)
  ess = np.asarray(diag["ess"])
  return {**res, "ess_min": float(ess.min()),
          "ess_median": float(np.median(ess)),
          "rhat_max": float(np.max(diag["rhat"])),
          "ess_per_s": float(ess.min()) / res["second_call_s"],
          "ess_per_s_with_compile": float(ess.min()) / res["first_call_s"]}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--worker", choices=("jaxbdl", "numpyro"))
  p.add_argument("--data")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--chains", type=int, default=4)
  p.add_argument("--warmup", type=int, default=500)
  p.add_argument("--samples", type=int, default=500)
  p.add_argument("--jaxbdl_python", default=sys.executable)
  p.add_argument("--numpyro_python",
                 default=os.path.join(REPO, ".venv-numpyro", "bin", "python"))
  p.add_argument("--out_dir", default=os.path.join(REPO, "bench", "results"))
  args = p.parse_args()
  if args.worker:
    fn = worker_jaxbdl if args.worker == "jaxbdl" else worker_numpyro
    print(json.dumps(fn(args)))
    return
  os.makedirs(args.out_dir, exist_ok=True)
  args.data = _data_file()
  load_before = os.getloadavg()
  rounds = {"jaxbdl": [], "numpyro": []}
  for r in range(args.rounds):
    for which in ("jaxbdl", "numpyro"):
      res = _diagnose(_run_worker(which, args))
      rounds[which].append(res)
      print(f"round {r} {which}: ESS/s {res['ess_per_s']:.2f}, R-hat max "
            f"{res['rhat_max']:.3f}, {res['second_call_s']:.1f} s",
            file=sys.stderr)
  load_after = os.getloadavg()
  summary = {w: {k: float(np.median([r[k] for r in rs])) for k in
                 ("ess_per_s", "ess_per_s_with_compile", "ess_min",
                  "ess_median", "rhat_max", "first_call_s", "second_call_s",
                  "divergent", "mean_leapfrog")}
             for w, rs in rounds.items()}
  ratio = summary["jaxbdl"]["ess_per_s"] / summary["numpyro"]["ess_per_s"]
  from jaxbdl.evaluation import results as results_lib
  commit = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
  import blackjax
  j, n = rounds["jaxbdl"][0], rounds["numpyro"][0]
  provenance = {
      "commit": commit, "date": datetime.datetime.now(
          datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
      "platform": f"{platform.platform()}, {platform.machine()}, "
                  f"{os.cpu_count()} CPUs",
      "device": j["device"], "jax_jaxbdl": j["jax"], "jax_numpyro": n["jax"],
      "numpyro": n["numpyro"], "blackjax": blackjax.__version__,
      "loadavg_before": load_before, "loadavg_after": load_after}
  rows = [{"library": w, "ESS/s (min over f(x*))": s["ess_per_s"],
           "ESS/s incl. compile": s["ess_per_s_with_compile"],
           "ESS min": s["ess_min"], "ESS median": s["ess_median"],
           "R-hat max": s["rhat_max"], "run s": s["second_call_s"],
           "first call s": s["first_call_s"], "divergent": s["divergent"],
           "mean leapfrog steps": s["mean_leapfrog"]}
          for w, s in summary.items()]
  table = (
      f"NUTS on a 1 x {H} tanh BNN (gap data, N=100, noise {NOISE}, prior "
      f"N(0, {PRIOR:g})), {args.chains} vectorised chains, {args.warmup} "
      f"warm-up + {args.samples} kept transitions; medians over "
      f"{args.rounds} alternating rounds; {provenance['platform']}, jax "
      f"{j['jax']}, blackjax {provenance['blackjax']}, numpyro "
      f"{n['numpyro']}; load average {load_before[0]:.2f} before, "
      f"{load_after[0]:.2f} after; commit {commit[:10]}.\n\n"
      f"Headline: jaxbdl / NumPyro ESS per second = **{ratio:.2f}x** "
      f"(target >= 1x).\n\n" + results_lib.markdown_table(rows, precision=3))
  results_lib.atomic_write_json(
      os.path.join(args.out_dir, "nuts_vs_numpyro.json"),
      {"rounds": rounds, "summary": summary, "ratio_ess_per_s": ratio,
       "provenance": provenance,
       "args": {k: v for k, v in vars(args).items() if k != "worker"}})
  results_lib.atomic_write_text(
      os.path.join(args.out_dir, "nuts_vs_numpyro.md"), table)
  print(table)


if __name__ == "__main__":
  main()
