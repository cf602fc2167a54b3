r"""Benchmark: one ELBO training step of a 1 x 50 BNN, jaxbdl vs NumPyro SVI.

The model (identical in both): ``y ~ N(f(x; W), 0.5^2)`` with ``f`` a
one-hidden-layer ReLU network of 50 units on ``D = 8`` inputs (the UCI
regression model), prior ``N(0, 1)`` on every weight and bias, mean-field
Gaussian posterior (NumPyro: ``AutoNormal`` guide; jaxbdl:
``vi.init_elbo_params`` + ``vi.make_elbo_loss_fn`` with the pathwise
estimator), one Monte Carlo sample per step, minibatch of 32 drawn from
``N = 9000`` synthetic examples, Adam(1e-3). NumPyro's ``Trace_ELBO``
evaluates the KL by sampling (log p - log q at the sample) while jaxbdl uses
the closed form; both are standard defaults for these libraries.

Two timings per library, each the median over rounds of the mean time per
step:

* ``dispatched``: a ``jax.jit``-ed step called from Python per minibatch
  (``svi.update`` / ``train.make_train_step``), what a hand-written loop does;
* ``scanned``: ``steps_per_call`` steps inside one compiled ``lax.scan``
  (jaxbdl's ``train.make_epoch``; for NumPyro the same scan over
  ``svi.update``).

The libraries need different environments (NumPyro 0.22 in ``.venv-numpyro``,
made by ``bench/setup_numpyro.sh``), so the driver runs worker subprocesses
back to back, alternating ``jaxbdl, numpyro, jaxbdl, ...`` so that machine
load hits both alike. Both workers also report the ELBO after the timed
steps as a sanity check (same order of magnitude).

Usage (repository root):
  bash bench/setup_numpyro.sh
  .venv/bin/python bench/bnn_step_vs_numpyro.py [--rounds 3]
Outputs: bench/results/bnn_step_vs_numpyro.{json,md} and the table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, D, H, B = 9000, 8, 50, 32
NOISE = 0.5


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D)).astype(np.float32)
  w = rng.normal(size=(D,)).astype(np.float32)
  y = (np.sin(x @ w) + NOISE * rng.normal(size=N)).astype(np.float32)
  return x, y


def _time(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def worker_jaxbdl(args):
  import jax
  import jax.numpy as jnp
  import optax
  sys.path.insert(0, REPO)
  from jaxbdl import networks, train, vi

  x, y = map(jnp.asarray, _data())
  model = networks.MLP((H, 1))
  apply_fn = lambda p, xb: model.apply({"params": p}, xb)
  key = jax.random.key(0)
  params = model.init(key, x[:1])["params"]
  prior = vi.gaussian_prior(1.0)
  noise = vi.fixed_gaussian_noise(NOISE)
  elbo_params = vi.init_elbo_params(params, prior, noise, init_scale=0.1)
  loss_fn = vi.make_elbo_loss_fn(apply_fn, noise.log_likelihood, prior, N)
  opt = optax.adam(1e-3)
  state = train.init_train_state(elbo_params, opt)
  raw_step = train.make_train_step(loss_fn, opt)
  # The jaxbdl idiom: the step key is fold_in(key, step) inside the program.
  step = jax.jit(lambda s, b: raw_step(s, b, jax.random.fold_in(key, s.step)))
  idx = np.random.default_rng(1).integers(0, N, size=(args.steps_per_call, B))
  batches = [{"x": x[i], "y": y[i]} for i in idx]

  def dispatched():
    s = state
    for b in batches:
      s, m = step(s, b)
    jax.block_until_ready(s.params)
    return s, m

  epoch = jax.jit(train.make_epoch(train.make_train_step(loss_fn, opt), B))
  sub = {"x": x[:args.steps_per_call * B], "y": y[:args.steps_per_call * B]}

  def scanned():
    s, m = epoch(state, sub, key)
    jax.block_until_ready(s.params)
    return s, m

  dispatched(); scanned()  # compile
  t_disp = _time(dispatched, args.repeats) / args.steps_per_call
  t_scan = _time(scanned, args.repeats) / args.steps_per_call
  _, m = scanned()
  return {"dispatched_s": t_disp, "scanned_s": t_scan,
          "elbo": float(m["elbo"]), "jax": jax.__version__,
          "device": str(jax.devices()[0])}


def worker_numpyro(args):
  import jax
  import jax.numpy as jnp
  import numpyro
  import numpyro.distributions as dist
  from numpyro.infer import SVI, Trace_ELBO
  from numpyro.infer.autoguide import AutoNormal

  x, y = map(jnp.asarray, _data())

  def model(xb, yb=None):
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([D, H]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([H]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([H, 1]).to_event(2))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    mean = (jax.nn.relu(xb @ w1 + b1) @ w2 + b2)[:, 0]
    with numpyro.plate("data", N, subsample_size=xb.shape[0]):
      numpyro.sample("y", dist.Normal(mean, NOISE), obs=yb)

  guide = AutoNormal(model, init_scale=0.1)
  svi = SVI(model, guide, numpyro.optim.Adam(1e-3), Trace_ELBO(num_particles=1))
  state = svi.init(jax.random.key(0), x[:B], y[:B])
  update = jax.jit(svi.update)
  idx = np.random.default_rng(1).integers(0, N, size=(args.steps_per_call, B))
  xb_all, yb_all = x[idx], y[idx]
  batches = [(xb_all[t], yb_all[t]) for t in range(args.steps_per_call)]

  def dispatched():
    s = state
    for xb, yb in batches:
      s, loss = update(s, xb, yb)
    jax.block_until_ready(loss)
    return s, loss

  @jax.jit
  def scan(s):
    return jax.lax.scan(lambda s, b: svi.update(s, b[0], b[1]), s,
                        (xb_all, yb_all))

  def scanned():
    s, losses = scan(state)
    jax.block_until_ready(losses)
    return s, losses

  dispatched(); scanned()
  t_disp = _time(dispatched, args.repeats) / args.steps_per_call
  t_scan = _time(scanned, args.repeats) / args.steps_per_call
  _, losses = scanned()
  return {"dispatched_s": t_disp, "scanned_s": t_scan,
          "elbo": -float(losses[-1]), "numpyro": numpyro.__version__,
          "jax": jax.__version__, "device": str(jax.devices()[0])}


def _run_worker(which, args):
  python = {"jaxbdl": os.path.join(REPO, ".venv", "bin", "python"),
            "numpyro": os.path.join(REPO, ".venv-numpyro", "bin", "python")}[which]
  if not os.path.exists(python):
    hint = "make setup" if which == "jaxbdl" else "bash bench/setup_numpyro.sh"
    raise FileNotFoundError(f"{python} not found; run `{hint}` first")
  cmd = [python, os.path.abspath(__file__), "--worker", which,
         "--steps_per_call", str(args.steps_per_call),
         "--repeats", str(args.repeats)]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO))
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--worker", choices=("jaxbdl", "numpyro"))
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps_per_call", type=int, default=200)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--out_dir", default=os.path.join(REPO, "bench", "results"))
  args = p.parse_args()
  if args.worker:
    fn = worker_jaxbdl if args.worker == "jaxbdl" else worker_numpyro
    print(json.dumps(fn(args)))
    return
  if args.rounds < 1 or args.steps_per_call < 1 or args.repeats < 1:
    p.error("--rounds, --steps_per_call and --repeats must be >= 1")
  rounds = {"jaxbdl": [], "numpyro": []}
  for r in range(args.rounds):
    for which in ("jaxbdl", "numpyro"):
      rounds[which].append(_run_worker(which, args))
      print(f"round {r} {which}: {rounds[which][-1]}", file=sys.stderr)
  med = {w: {k: float(np.median([x[k] for x in rs]))
             for k in ("dispatched_s", "scanned_s", "elbo")}
         for w, rs in rounds.items()}
  rows = []
  for mode in ("dispatched_s", "scanned_s"):
    j, n = med["jaxbdl"][mode], med["numpyro"][mode]
    rows.append({"mode": mode[:-2], "jaxbdl ms/step": 1e3 * j,
                 "numpyro ms/step": 1e3 * n, "speed-up (numpyro / jaxbdl)": n / j})
  sys.path.insert(0, REPO)
  from jaxbdl import results as results_lib
  table = (f"1 x {H} BNN ELBO step, B={B}, one sample, N={N}, D={D}; median of "
           f"{args.rounds} alternating rounds x {args.repeats} repeats x "
           f"{args.steps_per_call} steps; {platform.processor() or platform.machine()}, "
           f"device {rounds['jaxbdl'][0]['device']}, numpyro "
           f"{rounds['numpyro'][0]['numpyro']}, jax {rounds['jaxbdl'][0]['jax']}. "
           f"ELBO after the timed steps: jaxbdl {med['jaxbdl']['elbo']:.4g}, "
           f"numpyro {med['numpyro']['elbo']:.4g}.\n\n"
           + results_lib.markdown_table(rows, precision=4))
  os.makedirs(args.out_dir, exist_ok=True)
  results_lib.atomic_write_json(os.path.join(args.out_dir, "bnn_step_vs_numpyro.json"),
                                {"rounds": rounds, "median": med, "rows": rows})
  results_lib.atomic_write_text(os.path.join(args.out_dir, "bnn_step_vs_numpyro.md"),
                                table)
  print(table)


if __name__ == "__main__":
  main()
