r"""Benchmark: one ELBO training step of a 1 x 50 BNN, jaxbdl vs NumPyro SVI.

The model (identical in both): ``y ~ N(f(x; W), 0.5^2)`` with ``f`` a
one-hidden-layer ReLU network of 50 units on ``D = 8`` inputs (the UCI
regression model), prior ``N(0, 1)`` on every weight and bias, mean-field
Gaussian posterior, one Monte Carlo weight sample per step (pathwise /
reparameterised), minibatch of 32 drawn from ``N = 9000`` synthetic examples,
Adam(1e-3). Both start from the same variational means (LeCun-normal kernels,
zero biases, drawn here with NumPy) and scales (0.1), so their ELBOs are
comparable. NumPyro's ``Trace_ELBO`` evaluates the KL by sampling
(``log q - log p`` at the sample) while jaxbdl uses the closed form; both are
these libraries' defaults.

Variants (rows):

* jaxbdl ``flat`` (the headline): ``elbo.ravel_model`` turns the Flax parameter
  pytree into one vector, so q is two vectors ``mu, rho [501]``;
  ``elbo.init_params`` + ``elbo.make_loss_fn`` (pathwise) +
  ``train.make_train_step``. Same model, estimator and, for the same key, the
  same ELBO and gradients as the pytree form.
* jaxbdl ``pytree``: the same with q over the Flax pytree (4 leaves each).
* NumPyro ``AutoNormal`` (the issue's peer): one ``loc`` / ``scale`` per
  sample site; also ``AutoNormal, donated`` (the same with
  ``jax.jit(svi.update, donate_argnums=0)``, the control for jaxbdl's buffer
  donation) and ``AutoDiagonalNormal`` (NumPyro's own flat guide: one vector
  over all latent sites, the peer of jaxbdl ``flat``).

Two timings per variant, each the mean time per step of a call, summarised
by the median (and minimum) over all repeats of all rounds:

* ``dispatched``: a jitted step called from Python per minibatch
  (``train.jit_step``, which donates the state's buffers / ``svi.update``) on
  the same minibatches, what a hand-written loop does;
* ``scanned``: ``steps_per_call`` steps inside one compiled ``lax.scan`` over
  the same pre-gathered minibatches (``svi.update`` / the jaxbdl step with
  the key ``fold_in(key, step)``);
* ``scanned, train.make_epoch`` (jaxbdl flat only): the library's epoch, which
  also draws a permutation and gathers each minibatch inside the scan.

The libraries live in different environments (NumPyro 0.22 in
``.venv-numpyro``, made by ``bench/setup_numpyro.sh``, on the same jax), so
the driver runs worker subprocesses back to back, alternating ``jaxbdl,
numpyro, jaxbdl, ...``, and each worker interleaves its variants per repeat,
so that machine load hits all alike. Each variant also reports the mean
minibatch ELBO over the steps of one scanned call from the initial state (a
sanity check: the same model from the same start on the same minibatches
gives about the same value).

Usage (repository root):
  bash bench/setup_numpyro.sh
  .venv/bin/python bench/bnn_step_vs_numpyro.py [--rounds 3]
  # both libraries in one other interpreter (e.g. a machine with both):
  python3 bench/bnn_step_vs_numpyro.py --jaxbdl_python python3 \
      --numpyro_python python3 --out_dir /tmp/out
Outputs: bench/results/bnn_step_vs_numpyro.{json,md} and the table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import peers  # bench/peers.py: the scripts run as files, bench/ is on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, D, H, B = 9000, 8, 50, 32
NOISE = 0.5
INIT_SCALE = 0.1
HEADLINE = ("jaxbdl flat", "numpyro AutoNormal")
MODES = ("dispatched", "scanned", "epoch")
MODE_NAMES = {"dispatched": "dispatched", "scanned": "scanned",
              "epoch": "scanned, train.make_epoch (+ shuffle, gather)"}


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, D)).astype(np.float32)
  w = rng.normal(size=(D,)).astype(np.float32)
  y = (np.sin(x @ w) + NOISE * rng.normal(size=N)).astype(np.float32)
  return x, y


def _init_means():
  """Variational means for both libraries: LeCun-normal kernels, zero biases."""
  rng = np.random.default_rng(2)
  return {"w1": (rng.normal(size=(D, H)) / np.sqrt(D)).astype(np.float32),
          "b1": np.zeros((H,), np.float32),
          "w2": (rng.normal(size=(H, 1)) / np.sqrt(H)).astype(np.float32),
          "b2": np.zeros((1,), np.float32)}


def _batch_indices(steps):
  return np.random.default_rng(1).integers(0, N, size=(steps, B))


def _timed(fn):
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def _measure(variants, args):
  """Interleaves the variants per repeat; seconds per step of each call."""
  modes = {name: [m for m in MODES if m in v] for name, v in variants.items()}
  for name, v in variants.items():  # compile
    for mode in modes[name]:
      v[mode]()
  out = {name: {f"{m}_s": [] for m in modes[name]} for name in variants}
  for _ in range(args.repeats):
    for name, v in variants.items():
      for mode in modes[name]:
        t = _timed(v[mode]) / args.steps_per_call
        out[name][f"{mode}_s"].append(t)
  for name, v in variants.items():
    out[name]["elbo"] = v["elbo"]()
  return out


def worker_jaxbdl(args):
  import jax
  import jax.numpy as jnp
  import optax
  sys.path.insert(0, REPO)
  from jaxbdl.nn import networks
  from jaxbdl.training import train
  from jaxbdl.bayes import elbo as elbo_lib
  from jaxbdl.bayes import likelihoods, priors

  x, y = map(jnp.asarray, _data())
  m = _init_means()
  m = {k: jnp.asarray(v) for k, v in m.items()}
  params = {"Dense_0": {"kernel": m["w1"], "bias": m["b1"]},
            "Dense_1": {"kernel": m["w2"], "bias": m["b2"]}}
  model = networks.MLP((H, 1))
  apply_fn = lambda p, xb: model.apply({"params": p}, xb)
  key = jax.random.key(0)
  prior = priors.gaussian(1.0)
  noise = likelihoods.gaussian(NOISE)
  opt = optax.adam(1e-3)
  idx = _batch_indices(args.steps_per_call)
  batches = [{"x": x[i], "y": y[i]} for i in idx]
  stacked = {"x": x[idx], "y": y[idx]}  # [steps, B, ...]
  sub = {"x": x[:args.steps_per_call * B], "y": y[:args.steps_per_call * B]}
  copy = lambda tree: jax.tree.map(jnp.copy, tree)

  def variant(w0, apply, with_epoch=False):
    q0 = elbo_lib.init_mean_field(w0, INIT_SCALE)
    elbo_params = elbo_lib.init_params(q0, prior, noise)
    loss_fn = elbo_lib.make_loss_fn(elbo_lib.weight_space(apply), noise,
                                    prior, N)
    state0 = train.init_train_state(elbo_params, opt)
    step_fn = train.make_train_step(loss_fn, opt)
    step = train.jit_step(step_fn, key)  # fold_in(key, step) inside; donated

    @jax.jit
    def scan(s):  # NumPyro's protocol: the same pre-gathered minibatches
      return jax.lax.scan(
          lambda s, b: step_fn(s, b, jax.random.fold_in(key, s.step)), s,
          stacked)

    epoch = jax.jit(train.make_epoch(step_fn, B))

    def dispatched():
      s = copy(state0)  # donation consumes the state: start from a copy
      for b in batches:
        s, _ = step(s, b)
      jax.block_until_ready(s)

    def scanned():
      jax.block_until_ready(scan(state0))

    def epoch_():
      jax.block_until_ready(epoch(state0, sub, key))

    def elbo():
      return float(jnp.mean(scan(state0)[1]["elbo"]))

    out = {"dispatched": dispatched, "scanned": scanned, "elbo": elbo}
    if with_epoch:
      out["epoch"] = epoch_
    return out

  flat = elbo_lib.ravel_model(params, apply_fn)
  variants = {"jaxbdl flat": variant(flat.params, flat.apply_fn, True),
              "jaxbdl pytree": variant(params, apply_fn)}
  return {"variants": _measure(variants, args), "jax": jax.__version__,
          "device": str(jax.devices()[0])}


def worker_numpyro(args):
  import jax
  import jax.numpy as jnp
  import numpyro
  import numpyro.distributions as dist
  from numpyro.infer import SVI, Trace_ELBO, init_to_value
  from numpyro.infer.autoguide import AutoDiagonalNormal, AutoNormal

  x, y = map(jnp.asarray, _data())
  init = {k: jnp.asarray(v) for k, v in _init_means().items()}

  def model(xb, yb=None):
    w1 = numpyro.sample("w1", dist.Normal(0.0, 1.0).expand([D, H]).to_event(2))
    b1 = numpyro.sample("b1", dist.Normal(0.0, 1.0).expand([H]).to_event(1))
    w2 = numpyro.sample("w2", dist.Normal(0.0, 1.0).expand([H, 1]).to_event(2))
    b2 = numpyro.sample("b2", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    mean = (jax.nn.relu(xb @ w1 + b1) @ w2 + b2)[:, 0]
    with numpyro.plate("data", N, subsample_size=xb.shape[0]):
      numpyro.sample("y", dist.Normal(mean, NOISE), obs=yb)

  idx = _batch_indices(args.steps_per_call)
  xb_all, yb_all = x[idx], y[idx]
  batches = [(xb_all[t], yb_all[t]) for t in range(args.steps_per_call)]
  copy = lambda tree: jax.tree.map(jnp.copy, tree)

  def variant(guide_cls, donate=False):
    guide = guide_cls(model, init_loc_fn=init_to_value(values=init),
                      init_scale=INIT_SCALE)
    svi = SVI(model, guide, numpyro.optim.Adam(1e-3),
              Trace_ELBO(num_particles=1))
    state0 = svi.init(jax.random.key(0), x[:B], y[:B])
    update = jax.jit(svi.update, donate_argnums=(0,) if donate else ())

    @jax.jit
    def scan(s):
      return jax.lax.scan(lambda s, b: svi.update(s, b[0], b[1]), s,
                          (xb_all, yb_all))

    def dispatched():
      s = copy(state0) if donate else state0
      for xb, yb in batches:
        s, loss = update(s, xb, yb)
      jax.block_until_ready((s, loss))

    def scanned():
      jax.block_until_ready(scan(state0))

    def elbo():
      return -float(jnp.mean(scan(state0)[1]))

    return {"dispatched": dispatched, "scanned": scanned, "elbo": elbo}

  variants = {"numpyro AutoNormal": variant(AutoNormal),
              "numpyro AutoNormal, donated": variant(AutoNormal, donate=True),
              "numpyro AutoDiagonalNormal": variant(AutoDiagonalNormal)}
  return {"variants": _measure(variants, args), "numpyro": numpyro.__version__,
          "jax": jax.__version__, "device": str(jax.devices()[0])}


def _run_worker(which, args):
  python = {"jaxbdl": args.jaxbdl_python, "numpyro": args.numpyro_python}[which]
  return peers.run_worker(__file__, which, python, [
      "--steps_per_call", args.steps_per_call, "--repeats", args.repeats])


def _summarise(rounds):
  """Pools every repeat of every round: median and min ms/step per variant."""
  summary = {}
  for which_rounds in rounds.values():
    for name in which_rounds[0]["variants"]:
      rs = [r["variants"][name] for r in which_rounds]
      s = {}
      for mode in MODES:
        if f"{mode}_s" not in rs[0]:
          continue
        times = np.concatenate([r[f"{mode}_s"] for r in rs])
        s[f"{mode}_ms_median"] = 1e3 * float(np.median(times))
        s[f"{mode}_ms_min"] = 1e3 * float(np.min(times))
      s["elbo"] = float(np.median([r["elbo"] for r in rs]))
      summary[name] = s
  return summary


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--worker", choices=("jaxbdl", "numpyro"))
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps_per_call", type=int, default=200)
  p.add_argument("--repeats", type=int, default=5)
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
  if args.rounds < 1 or args.steps_per_call < 1 or args.repeats < 1:
    p.error("--rounds, --steps_per_call and --repeats must be >= 1")
  load_before = os.getloadavg()
  rounds = {"jaxbdl": [], "numpyro": []}
  for r in range(args.rounds):
    for which in ("jaxbdl", "numpyro"):
      rounds[which].append(_run_worker(which, args))
      med = {k: round(1e3 * float(np.median(v["dispatched_s"])), 4)
             for k, v in rounds[which][-1]["variants"].items()}
      print(f"round {r} {which}: dispatched ms/step {med}", file=sys.stderr)
  load_after = os.getloadavg()
  summary = _summarise(rounds)
  ref = summary[HEADLINE[1]]
  rows = []
  for mode in MODES:
    for name, s in summary.items():
      if f"{mode}_ms_median" not in s:
        continue
      ref_mode = "scanned" if mode == "epoch" else mode
      rows.append({
          "mode": MODE_NAMES[mode], "variant": name,
          "ms/step (median)": s[f"{mode}_ms_median"],
          "ms/step (min)": s[f"{mode}_ms_min"],
          "speed-up vs numpyro AutoNormal (median)":
              ref[f"{ref_mode}_ms_median"] / s[f"{mode}_ms_median"],
          "ELBO (mean over one scanned call)": s["elbo"]})
  ours = summary[HEADLINE[0]]
  headline = {mode: ref[f"{mode}_ms_median"] / ours[f"{mode}_ms_median"]
              for mode in ("dispatched", "scanned")}
  sys.path.insert(0, REPO)
  from jaxbdl.evaluation import results as results_lib
  j, n = rounds["jaxbdl"][0], rounds["numpyro"][0]
  table = (
      f"1 x {H} BNN ELBO step, B={B}, one weight sample, N={N}, D={D}, "
      f"Adam(1e-3), same initial q; median (and min) over {args.rounds} "
      f"alternating rounds x {args.repeats} repeats of the mean over "
      f"{args.steps_per_call} steps; "
      f"{platform.processor() or platform.machine()}, "
      f"{os.cpu_count()} CPUs, device {j['device']}, jax {j['jax']} (jaxbdl) / "
      f"{n['jax']} (numpyro {n['numpyro']}); load average "
      f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.\n\n"
      f"Headline (jaxbdl flat vs NumPyro AutoNormal, medians): "
      f"**{headline['dispatched']:.2f}x** dispatched, "
      f"**{headline['scanned']:.2f}x** scanned (target: 2x).\n\n"
      + results_lib.markdown_table(rows, precision=4))
  os.makedirs(args.out_dir, exist_ok=True)
  results_lib.atomic_write_json(
      os.path.join(args.out_dir, "bnn_step_vs_numpyro.json"),
      {"rounds": rounds, "summary": summary, "rows": rows,
       "headline_speedup": headline,
       "loadavg_before": load_before, "loadavg_after": load_after,
       "args": {k: v for k, v in vars(args).items() if k != "worker"},
       "provenance": results_lib.provenance()})
  results_lib.atomic_write_text(
      os.path.join(args.out_dir, "bnn_step_vs_numpyro.md"), table)
  print(table)


if __name__ == "__main__":
  main()
