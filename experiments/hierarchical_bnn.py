"""Hierarchical Bayesian neural networks on rotated two-moons tasks (NUTS).

Reproduces the BlackJAX sampling book's "Hierarchical Bayesian neural
networks" (after T. Wiecki's PyMC3 notebook): ``T`` two-moons tasks
(``make_moons(noise=0.3)``, 100 points, standardised, rotated by
``N(0, 90 deg)``), the first 50 points of each to train and the last 50 to
test; an MLP ``2 -> 5 -> 5 -> 1`` with tanh and NO biases, Bernoulli logits.

* ``separate``: one BNN per task, ``w ~ N(0, 1)``; the core's ``hmc`` method
  (``jaxbdl.bayes.hmc.make``) vmapped over the tasks.
* ``hierarchical``: per-task weights in non-centred form
  ``w_t = mu + sigma_l eps_t`` with ``mu, eps_t ~ N(0, 1)`` and one
  ``sigma_l ~ HalfNormal(1)`` per layer, sampled jointly (NUTS over
  ``{mu, log sigma, eps}``; ``log sigma`` adds its Jacobian). Deviation from
  the book: it samples ``sigma`` unconstrained, so negative values get
  ``log p = -inf``; the book also starts sampling from the INITIAL position
  rather than the adapted one. We keep the adapted state (BlackJAX
  ``window_adaptation``, as ``jaxbdl.bayes.hmc.run_nuts``).

Both use the core's likelihood (``likelihoods.bernoulli``), prior
(``priors.gaussian``: ``log HalfNormal(s; 1) = log 2 + log N(s; 0, 1)``) and
NUTS (``hmc.run_nuts``, several chains vmapped). Accuracy: argmax of the
posterior predictive (mean over draws of the class probabilities); the book
thresholds the mean of sampled Bernoulli labels, the same rule up to Monte
Carlo noise. R-hat: split R-hat of the test predictive probabilities
(weights are not identifiable).

Published (one data draw, one chain): test accuracy 82.6 % (separate) and
87.1 % (hierarchical).
"""
from __future__ import annotations

import os
import time
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree
from sklearn import datasets, preprocessing

from experiments import launch
from jaxbdl.evaluation import metric_writers
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import hmc
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors

__all__ = ["run", "make_tasks", "NoBiasMLP", "hierarchical_log_density",
           "task_weights", "PUBLISHED"]

PUBLISHED = {"separate": 0.826, "hierarchical": 0.871}


class NoBiasMLP(nn.Module):
  """``[N, D] -> [N, features[-1]]``: Dense (no bias) + tanh, linear output
  (the book's ``bnn``)."""
  features: Sequence[int]

  @nn.compact
  def __call__(self, x):
    for i, f in enumerate(self.features):
      x = nn.Dense(int(f), use_bias=False, name=f"Dense_{i}")(x)
      if i < len(self.features) - 1:
        x = jnp.tanh(x)
    return x


def make_tasks(num_tasks: int, num_points: int, noise: float,
               rotation_deg: float, seed: int) -> dict:
  """``{"x": [T, P, 2], "y": [T, P]}``: standardised two moons, each task
  rotated by ``N(0, rotation_deg)`` degrees (numpy RNG ``seed``)."""
  rng = np.random.default_rng(seed)
  xs, ys = [], []
  for _ in range(num_tasks):
    x, y = datasets.make_moons(n_samples=num_points, noise=noise,
                               random_state=int(rng.integers(2**31 - 1)))
    x = preprocessing.scale(x)
    theta = np.radians(rng.normal() * rotation_deg)
    r = np.array([[np.cos(theta), -np.sin(theta)],
                  [np.sin(theta), np.cos(theta)]])
    xs.append(x @ r)
    ys.append(y)
  return {"x": np.stack(xs).astype(np.float32),
          "y": np.stack(ys).astype(np.int32)}


def task_weights(tree: dict) -> dict:
  """``W_t = mu + exp(log_sigma_l) eps_t`` per leaf: ``[T, ...]`` leaves."""
  return jax.tree.map(lambda m, ls, e: m[None] + jnp.exp(ls) * e,
                      tree["mu"], tree["log_sigma"], tree["eps"])


def hierarchical_log_density(model: post_lib.Model, data: dict, hp: dict):
  """``tree -> log p(y | W_t) + log N(mu) + log N(eps) + log HalfNormal(sigma)
  + log sigma`` (the Jacobian of ``sigma = exp(log_sigma)``)."""
  lik, prior = model.likelihood(hp), model.prior(hp)

  def fn(tree):
    w = task_weights(tree)
    out = jax.vmap(lambda wt, xt: model.module.apply({"params": wt}, xt))(
        w, data["x"])
    ll = jnp.sum(jax.vmap(lambda yt, ot: lik.log_prob({}, yt, ot))(
        data["y"], out))
    sigma = jax.tree.map(jnp.exp, tree["log_sigma"])
    log_sigma = tree["log_sigma"]
    num_layers = len(jax.tree.leaves(log_sigma))
    return (ll + prior.log_prob({}, tree["mu"]) + prior.log_prob({}, tree["eps"])
            + prior.log_prob({}, sigma) + num_layers * jnp.log(2.0)
            + priors.tree_sum(log_sigma))

  return fn


def _accuracy_nll(probs, y):
  """``probs [T, N, 2]`` (posterior predictive), ``y [T, N]``."""
  acc = float(np.mean(np.argmax(probs, -1) == y))
  p = np.take_along_axis(probs, y[..., None], -1)[..., 0]
  return acc, float(-np.mean(np.log(np.clip(p, 1e-12, None))))


def _rhat(p1):
  """Max split R-hat of predictive probabilities ``p1 [C, S, ...]``."""
  return float(np.max(hmc.convergence(p1.reshape(p1.shape[:2] + (-1,)))[
      "rhat"]))


def _fit_separate(model, config, data, key, hp):
  """The core's ``hmc`` method vmapped over tasks. Returns ``(draws,
  history, predict)``; ``predict(draws, xq [T, M, 2]) -> [T, S, M, 2]``."""
  post = hmc.make(model, ml_collections.ConfigDict(dict(
      num_chains=config.num_chains, num_warmup=config.num_warmup,
      num_samples=config.num_samples,
      target_acceptance=config.target_acceptance,
      max_num_doublings=config.max_num_doublings)))
  keys = jax.random.split(key, data["x"].shape[0])
  state, hist = jax.jit(jax.vmap(lambda k, xt, yt: post.fit(
      k, {"x": xt, "y": yt}, hp)))(keys, data["x"], data["y"])

  @jax.jit
  def predict(samples, xq):
    return jax.vmap(lambda s, xt: hmc.predict_from_samples(
        model, s, xt, hp, None)["probs"])(samples, xq)

  return state["samples"], hist, predict


def _fit_hierarchical(model, config, data, key, hp):
  """NUTS over ``{mu, log_sigma, eps}``; returns as :func:`_fit_separate`
  (draws flat ``[C*S, D]``)."""
  t = data["x"].shape[0]
  init_key, run_key = jax.random.split(key)

  def init(k):
    k1, k2 = jax.random.split(k)
    mu = model.module.init(k1, jnp.zeros((1, 2)))["params"]
    leaves, tree = jax.tree.flatten(mu)
    ks = jax.random.split(k2, len(leaves))
    eps = jax.tree.unflatten(tree, [
        jax.random.normal(kk, (t,) + l.shape) for kk, l in zip(ks, leaves)])
    return {"mu": mu, "log_sigma": jax.tree.map(lambda l: jnp.zeros(()), mu),
            "eps": eps}

  trees = jax.jit(jax.vmap(init))(jax.random.split(init_key,
                                                   config.num_chains))
  one = jax.tree.map(lambda a: a[0], trees)
  _, unravel = ravel_pytree(one)
  logp = hierarchical_log_density(model, data, hp)
  hmc.check_initial_log_density(logp, one)

  @jax.jit
  def fit(trees):
    flat = jax.vmap(lambda tr: ravel_pytree(tr)[0])(trees)
    chains = hmc.run_nuts(
        run_key, lambda w: logp(unravel(w)), flat,
        num_warmup=config.num_warmup, num_samples=config.num_samples,
        target_acceptance=config.target_acceptance,
        max_num_doublings=config.max_num_doublings)
    hist = {"num_divergent": chains.num_divergent,
            "num_integration_steps": chains.num_integration_steps,
            "step_size": chains.step_size}
    return chains.positions.reshape((-1, chains.positions.shape[-1])), hist

  lik = model.likelihood(hp)

  @jax.jit
  def predict(draws, xq):
    def probs_at(w_flat):
      w = task_weights(unravel(w_flat))
      out = jax.vmap(lambda wt, xt: model.module.apply({"params": wt}, xt))(
          w, xq)
      return lik.predictive({}, out)["probs"]  # [T, M, 2]
    return jnp.moveaxis(jax.lax.map(probs_at, draws), 0, 1)

  draws, hist = fit(trees)
  return draws, hist, predict


def _thin(draws, every):
  """Every ``every``-th draw (axis 1 for per-task trees, 0 for flat)."""
  if isinstance(draws, dict):
    return jax.tree.map(lambda a: a[:, ::every], draws)
  return draws[::every]


def _summarise(name, probs, hist, data, config, secs):
  """probs ``[T, C*S, N_train + N_test, 2]``."""
  n_tr = data["y_train"].shape[1]
  t = data["y_train"].shape[0]
  mean = np.asarray(jnp.mean(probs, axis=1))  # [T, M, 2]
  acc_tr, _ = _accuracy_nll(mean[:, :n_tr], data["y_train"])
  acc_te, nll_te = _accuracy_nll(mean[:, n_tr:], data["y_test"])
  per_task = np.mean(np.argmax(mean[:, n_tr:], -1) == data["y_test"], axis=1)
  c = config.num_chains
  p1 = np.asarray(probs[:, :, n_tr:, 1])  # [T, C*S, N]
  p1 = np.moveaxis(p1.reshape((t, c, -1, p1.shape[-1])), 0, 2)  # [C,S,T,N]
  n_trans = c * config.num_samples * (t if name == "separate" else 1)
  div = hmc.check_divergences(hist["num_divergent"], n_trans, 0.01)
  row = {"model": name, "train_accuracy": acc_tr, "test_accuracy": acc_te,
         "test_nll": nll_te, "published_test_accuracy": PUBLISHED[name],
         "rhat_max": _rhat(p1), "divergences": div,
         "mean_leapfrog_steps": float(np.mean(hist["num_integration_steps"])),
         "seconds": secs}
  return row, per_task


def _plot(data, grids, per_task, config, path):
  """Posterior predictive surfaces of the first ``plot_tasks`` tasks (rows:
  separate, hierarchical), training points on top, per-task test accuracy
  in each title."""
  plt = results_lib.pyplot()
  k = min(config.plot_tasks, data["x_train"].shape[0])
  g = config.grid_points
  lin = np.linspace(-3, 3, g)
  fig, axes = plt.subplots(2, k, figsize=(2.4 * k + 1.6, 5.4), squeeze=False,
                           sharex=True, sharey=True)
  for r, name in enumerate(("separate", "hierarchical")):
    for t in range(k):
      ax = axes[r][t]
      cs = ax.contourf(lin, lin, grids[name][t].reshape(g, g),
                       levels=np.linspace(0, 1, 21), cmap="RdBu_r")
      x, y = data["x_train"][t], data["y_train"][t]
      for c, colour in ((0, "tab:blue"), (1, "tab:red")):
        ax.scatter(x[y == c, 0], x[y == c, 1], color=colour, s=8,
                   edgecolors="k", linewidths=0.3, label=f"train, class {c}")
      ax.set_title(f"{name}, task {t + 1}\ntest acc "
                   f"{per_task[name][t]:.2f}", fontsize=8)
      ax.set_xlim(-3, 3)
      ax.set_ylim(-3, 3)
      if r == 1:
        ax.set_xlabel("x1 (standardised)")
      if t == 0:
        ax.set_ylabel("x2 (standardised)")
  fig.subplots_adjust(right=0.86, top=0.84, hspace=0.45)
  cax = fig.add_axes([0.88, 0.15, 0.015, 0.6])
  fig.colorbar(cs, cax=cax, label="p(class 1 | x, data)")
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False)
  fig.suptitle("NUTS posterior predictive on rotated two-moons tasks (seed "
               f"{config.seeds[0]}); {config.num_warmup} warm-up + "
               f"{config.num_samples} draws x {config.num_chains} chains",
               fontsize=10, x=0.45)
  results_lib.save_figure(fig, path)


def run(config, workdir: str) -> dict:
  t_start = time.perf_counter()
  module = NoBiasMLP(tuple(config.hidden) + (1,))
  model = post_lib.Model(module, lambda hp: likelihoods.bernoulli(),
                         lambda hp: priors.gaussian(config.prior_scale))
  hp = {"temperature": 1.0}
  g = config.grid_points
  lin = np.linspace(-3, 3, g, dtype=np.float32)
  grid = np.stack(np.meshgrid(lin, lin), -1).reshape(-1, 2)
  rows, runs = [], []
  for si, seed in enumerate(config.seeds):
    d = make_tasks(config.num_tasks, config.points_per_task,
                   config.moons_noise, config.rotation_scale_deg, int(seed))
    half = config.points_per_task // 2
    t = config.num_tasks
    data = {"x": jnp.asarray(d["x"][:, :half]), "y": jnp.asarray(
        d["y"][:, :half]), "x_train": d["x"][:, :half],
            "y_train": d["y"][:, :half], "y_test": d["y"][:, half:]}
    key = jax.random.key(int(seed))
    grids, per_task = {}, {}
    for name, fn in (("separate", _fit_separate),
                     ("hierarchical", _fit_hierarchical)):
      t0 = time.perf_counter()
      draws, hist, predict = fn(model, config, data, jax.random.fold_in(
          key, len(name)), hp)
      probs = jax.block_until_ready(predict(draws, jnp.asarray(d["x"])))
      secs = time.perf_counter() - t0
      row, per_task[name] = _summarise(name, probs, hist, data, config, secs)
      # Decision surface from <= 100 draws (plot only).
      every = max(1, config.num_chains * config.num_samples // 100)
      grids[name] = np.asarray(jnp.mean(predict(
          _thin(draws, every), jnp.broadcast_to(grid, (t,) + grid.shape)),
          axis=1)[..., 1])
      row["seed"] = int(seed)
      rows.append(row)
      print(f"seed {seed} {name}: test accuracy "
            f"{row['test_accuracy']:.3f} ({secs:.0f} s)", flush=True)
      with metric_writers.open_run(workdir, f"seed{seed}_{name}") as w:
        w.write_scalars(0, {k: row[k] for k in (
            "train_accuracy", "test_accuracy", "test_nll", "rhat_max")})
        for ti, a in enumerate(per_task[name]):
          w.write_scalars(ti, {"per_task/test_accuracy": a})
    runs.append({"seed": int(seed), "per_task_test_accuracy": {
        k: v.tolist() for k, v in per_task.items()}})
    if si == 0:
      _plot(data, grids, per_task, config,
            os.path.join(workdir, "hierarchical_bnn.png"))
  summary = []
  for name in ("separate", "hierarchical"):
    accs = np.array([r["test_accuracy"] for r in rows if r["model"] == name])
    se = float(accs.std(ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else None
    summary.append({"model": name, "test_accuracy_mean": float(accs.mean()),
                    "test_accuracy_se": se, "num_seeds": len(accs),
                    "published_test_accuracy": PUBLISHED[name]})
  load = open("/proc/loadavg").read().split()[:3]
  table = (results_lib.markdown_table(rows, [
      "seed", "model", "train_accuracy", "test_accuracy",
      "published_test_accuracy", "test_nll", "rhat_max", "divergences",
      "mean_leapfrog_steps", "seconds"], precision=3)
      + "\n" + results_lib.markdown_table(summary, [
          "model", "test_accuracy_mean", "test_accuracy_se", "num_seeds",
          "published_test_accuracy"], precision=3)
      + "\ntest_accuracy: argmax of the posterior predictive on the 50 "
      "held-out points of each task, mean over tasks; published: the book "
      "(one data draw, one chain). rhat_max: split R-hat of the test "
      "predictive probabilities (weights are not identifiable), max over "
      "tasks and points. mean_leapfrog_steps: per transition; "
      f"{2 ** config.max_num_doublings - 1} = every transition hit the "
      "tree-depth cap (max_num_doublings). test_accuracy_se: std (ddof 1) / "
      "sqrt(seeds); None with one seed.\n"
      + f"\nload average at the end: {' '.join(load)} (timings include "
      "compilation)\n")
  res = {"rows": rows, "summary": summary, "runs": runs,
         "config": config.to_dict(), "published": PUBLISHED,
         "seconds": time.perf_counter() - t_start, "load_average": load}
  results_lib.write_outputs(workdir, res, table)
  return res


if __name__ == "__main__":
  launch.main("hierarchical_bnn", run)
