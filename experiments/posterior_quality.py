"""How close is each approximate posterior to HMC? (Izmailov et al. 2021, small).

On the same model (network, likelihood, prior; ``T = 1``) a long multi-chain
NUTS run is the reference posterior; every method of
``jaxbdl.bayes.registry`` (``config.methods``) is fitted on the same training
data and compared with it on test inputs:

* classification (breast cancer, MLP 1x20 tanh, 2 classes): top-1 agreement
  ``mean[argmax p = argmax p_hmc]`` and total variation
  ``mean 0.5 sum_c |p_c - p_hmc,c|`` of the predictive probabilities (their
  Sec. 4, "agreement" and "total variation");
* regression (1-D gap data, MLP 1x50 tanh, noise fixed at its true sd 0.1):
  the 2-Wasserstein distance between the Gaussian summaries of the two
  predictives, ``sqrt((m - m_hmc)^2 + (s - s_hmc)^2)`` averaged over a grid
  that covers the data, the gap and beyond;

plus test NLL, calibration (ECE with 10 bins; regression: |coverage of the
central 90% interval - 0.9|) and wall time (fit + predict, compilation
included), and for multi-chain methods the split R-hat of the predictions
(``rhat_max``; over weights: ``rhat_weights_max``). The ``hmc`` method (a
second, shorter NUTS run) gives the HMC-vs-HMC floor. Nothing is tuned on test data: every method runs with the
registry's defaults overridden by the config.

References:
  Izmailov, Vikram, Hoffman & Wilson (2021), "What are Bayesian neural network
  posteriors really like?", ICML, Sec. 4 (agreement, total variation) and
  Sec. 8-9 (deep ensembles are closer to HMC than mean-field VI; SG-MCMC close
  to HMC).
"""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from experiments import launch
from jaxbdl import data as data_lib
from jaxbdl.evaluation import metrics
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import hmc
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

__all__ = ["run", "load_task", "compare", "w2_gaussian", "prediction_rhat"]


def w2_gaussian(m1, v1, m2, v2) -> jax.Array:
  """Per-point 2-Wasserstein distance between ``N(m1, v1)`` and
  ``N(m2, v2)`` (``v`` variances): ``sqrt((m1-m2)^2 + (s1-s2)^2)``."""
  return jnp.sqrt((m1 - m2)**2 + (jnp.sqrt(v1) - jnp.sqrt(v2))**2)


def load_task(name: str, config, key):
  """``(model, train {"x","y"}, test {"x","y"}, hp_overrides)``."""
  if name == "gap":
    t = config.gap
    d = data_lib.gap_regression(key, t.num_points, t.noise_std)
    k_test = jax.random.fold_in(key, 1)
    y_grid = d.f_grid + t.noise_std * jax.random.normal(k_test,
                                                        d.f_grid.shape)
    model = post_lib.mlp_model(
        tuple(t.hidden), 1, lambda hp: likelihoods.gaussian(hp["noise_scale"]),
        lambda hp: priors.gaussian(hp["prior_scale"]), activation=t.activation)
    return (model, {"x": d.x, "y": d.y}, {"x": d.x_grid, "y": y_grid},
            {"noise_scale": float(t.noise_std), "prior_scale": t.prior_scale})
  if name == "breast_cancer":
    t = config.breast_cancer
    x, y = data_lib.load_breast_cancer(standardised=False)
    xtr, ytr, xte, yte = data_lib.train_test_split_arrays(config.seed, x, y,
                                                          t.test_fraction)
    (xtr, xte), _, _ = data_lib.standardise(xtr, xte)
    model = post_lib.mlp_model(
        tuple(t.hidden), 2, lambda hp: likelihoods.categorical(2),
        lambda hp: priors.gaussian(hp["prior_scale"]), activation=t.activation)
    return (model, {"x": jnp.asarray(xtr), "y": jnp.asarray(ytr)},
            {"x": jnp.asarray(xte), "y": jnp.asarray(yte)},
            {"prior_scale": t.prior_scale})
  raise ValueError(f"unknown task {name!r}; valid: 'gap', 'breast_cancer'")


def prediction_rhat(pred: dict, num_chains: int) -> float:
  """Max split R-hat of the predictive means (regression) or class-1
  probabilities over test inputs; draws are chain-major ``[C * S, M]``.

  Weights are not identifiable (hidden-unit permutations, sign flips), so
  R-hat over weights says little; over predictions it is meaningful.
  """
  a = np.asarray(pred["mean"] if "mean" in pred else pred["probs"][..., 1])
  a = a.reshape((num_chains, -1) + a.shape[1:])
  return float(np.max(hmc.convergence(jnp.asarray(a))["rhat"]))


def _fit_predict(post, key, train, test_x, hp):
  t0 = time.perf_counter()
  k_fit, k_pred = jax.random.split(key)
  state, hist = jax.jit(post.fit)(k_fit, train, hp)
  pred = jax.jit(post.predict)(state, test_x, k_pred, hp)
  pred = jax.tree.map(lambda a: np.asarray(a), pred)
  return state, hist, pred, time.perf_counter() - t0


def compare(pred: dict, ref: dict, y: np.ndarray) -> dict:
  """Agreement with the reference predictive and test metrics."""
  nll = float(-np.mean(likelihoods.mixture_log_prob(pred, jnp.asarray(y))))
  s, r = likelihoods.mixture_summary(pred), likelihoods.mixture_summary(ref)
  if "probs" in pred:
    p, q = np.asarray(s["probs"]), np.asarray(r["probs"])
    return {"agreement": float(np.mean(p.argmax(-1) == q.argmax(-1))),
            "total_variation": float(np.mean(0.5 * np.abs(p - q).sum(-1))),
            "test_nll": nll,
            "accuracy": float(np.mean(p.argmax(-1) == y)),
            "ece": float(metrics.expected_calibration_error(
                jnp.asarray(y), jnp.asarray(p)))}
  m, v = np.asarray(s["mean"]), np.asarray(s["variance"])
  z = stats.norm.ppf(0.95)
  cover = np.mean(np.abs(y - m) <= z * np.sqrt(v))
  return {"w2": float(np.mean(w2_gaussian(m, v, r["mean"], r["variance"]))),
          "test_nll": nll, "rmse": float(np.sqrt(np.mean((y - m)**2))),
          "calibration_error_90": float(abs(cover - 0.9))}


def _plot(rows, workdir, gap_preds, gap_train):
  plt = results_lib.pyplot()
  tasks = sorted({r["task"] for r in rows})
  fig, axes = plt.subplots(1, len(tasks) + (1 if gap_preds else 0),
                           figsize=(5 * (len(tasks) + 1), 4), squeeze=False)
  for ax, task in zip(axes[0], tasks):
    rs = [r for r in rows if r["task"] == task and r["method"] != "reference"]
    key = "w2" if task == "gap" else "total_variation"
    ax.barh([r["method"] for r in rs], [r[key] for r in rs], color="C0")
    ax.set_xlabel("mean W2 to HMC (y units)" if key == "w2"
                  else "total variation to HMC (probability)")
    ax.set_title(f"{task}: distance to the NUTS reference")
  if gap_preds:
    ax = axes[0][-1]
    x = gap_preds.pop("_x")
    for i, (name, (m, sd)) in enumerate(gap_preds.items()):
      ax.plot(x, m, color=f"C{i}", label=name)
      ax.fill_between(x, m - 2 * sd, m + 2 * sd, color=f"C{i}", alpha=0.15)
    ax.scatter(gap_train[0], gap_train[1], s=6, color="k", label="train data")
    ax.axvspan(-0.3, 0.3, color="0.9")
    ax.set_xlabel("x")
    ax.set_ylabel("y (predictive mean +- 2 sd)")
    ax.set_title("gap data: predictives")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)
  results_lib.save_figure(fig, os.path.join(workdir, "posterior_quality.png"))


def run(config, workdir: str) -> dict:
  t_start = time.perf_counter()
  names = registry.check_names(config.methods)
  key = jax.random.key(config.seed)
  rows, gap_preds, gap_train = [], {}, None
  for ti, task in enumerate(config.tasks):
    k_task = jax.random.fold_in(key, ti)
    model, train, test, hp_over = load_task(task, config, k_task)
    ref_post = hmc.make(model, config.reference)
    ref_hp = registry.default_hparams("hmc", config.registry, hp_over)
    state, hist, ref, secs = _fit_predict(
        ref_post, jax.random.fold_in(k_task, 1000), train, test["x"], ref_hp)
    n_trans = (config.reference.num_chains * config.reference.num_samples
               * config.reference.thin)
    div = hmc.check_divergences(hist["num_divergent"], n_trans, 0.01)
    y = np.asarray(test["y"])
    print(f"{task} reference NUTS: {secs:.0f} s", flush=True)
    row = {"task": task, "method": "reference", "seconds": secs,
           "rhat_max": prediction_rhat(ref, config.reference.num_chains),
           "rhat_weights_max": float(np.max(hist["rhat"])),
           "ess_min": float(np.min(hist["ess"])), "divergences": div}
    row.update(compare(ref, ref, y))
    rows.append(row)
    if task == "gap":
      gap_train = (np.asarray(train["x"])[:, 0], np.asarray(train["y"]))
      gap_preds["_x"] = np.asarray(test["x"])[:, 0]
      s = likelihoods.mixture_summary(ref)
      gap_preds["reference NUTS"] = (np.asarray(s["mean"]),
                                     np.sqrt(np.asarray(s["variance"])))
    for mi, name in enumerate(names):
      post = registry.build(name, model, config.registry)
      hp = registry.default_hparams(name, config.registry, hp_over)
      _, hist, pred, secs = _fit_predict(
          post, jax.random.fold_in(k_task, mi), train, test["x"], hp)
      row = {"task": task, "method": name, "seconds": secs}
      print(f"{task} {name}: {secs:.0f} s", flush=True)
      if "rhat" in hist:
        chains = registry.method_config(name, config.registry).num_chains
        row["rhat_max"] = prediction_rhat(pred, chains)
        row["rhat_weights_max"] = float(np.max(hist["rhat"]))
      row.update(compare(pred, ref, y))
      rows.append(row)
      # Partial results on disk after every method (long runs).
      results_lib.atomic_write_json(
          os.path.join(workdir, "partial_rows.json"), {"rows": rows})
      if task == "gap":
        s = likelihoods.mixture_summary(pred)
        gap_preds[name] = (np.asarray(s["mean"]),
                           np.sqrt(np.asarray(s["variance"])))
  cols = ["task", "method", "w2", "agreement", "total_variation", "test_nll",
          "rmse", "accuracy", "ece", "calibration_error_90", "rhat_max",
          "rhat_weights_max",
          "seconds"]
  present = [c for c in cols if any(c in r for r in rows)]
  load = open("/proc/loadavg").read().split()[:3]
  table = (results_lib.markdown_table(rows, present, precision=3)
           + f"\nload average at the end: {' '.join(load)} (timings include "
           "compilation)\n")
  res = {"rows": rows, "seconds": time.perf_counter() - t_start,
         "load_average": load, "jax": jax.__version__,
         "devices": str(jax.devices())}
  results_lib.write_outputs(workdir, res, table)
  _plot(rows, workdir, gap_preds, gap_train)
  return res


if __name__ == "__main__":
  launch.main("posterior_quality", run)
