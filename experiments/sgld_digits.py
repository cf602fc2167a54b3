"""SGLD on the 8x8 digits: does averaging over posterior draws beat the last
draw? (BlackJAX's SGLD MNIST example: 0.9593 averaged vs 0.9528 last.)

Data: scikit-learn's digits (1797 images, 64 pixels in [0, 1]), a seeded
train / test split (``test_fraction``); a validation set is carved from the
training part (``valid_fraction``) and used for the ONLY choice, the
per-datum SGLD step ``eta`` (``learning_rates``; lowest validation NLL of the
posterior-averaged predictive, on chains trained without the validation
points). The chosen ``eta`` is then re-run on the whole training part and
scored on the test set.

Model: ``networks.MLP(hidden + (10,))``, categorical likelihood, Gaussian
prior (the core's), sampled by the registry's ``sgld`` (Welling & Teh 2011;
polynomial step decay, burn-in, thinning; BlackJAX ``sgld`` kernel);
``num_seeds`` independent chains (network initialisation and noise) in one
vmapped program. Per chain: accuracy / NLL of the LAST kept draw and of the
equal-weight average over the chain's kept draws; reported as mean +- SE
over chains, with the paired difference (averaged - last).

References:
  Welling & Teh (2011), "Bayesian learning via stochastic gradient Langevin
  dynamics", ICML.
  BlackJAX sampling book, "MNIST digits classification with SgLD".
"""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import launch
from jaxbdl import data as data_lib
from jaxbdl.evaluation import metric_writers
from jaxbdl.nn import networks
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior as post_lib
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

__all__ = ["run", "chain_scores", "load"]

PUBLISHED = {"averaged": 0.9593, "last": 0.9528}  # BlackJAX, MNIST


def load(config):
  """``(train, valid, test)`` dicts ``{"x": [N, 64], "y": [N]}``."""
  images, labels = data_lib.load_digits()
  x = images.reshape((images.shape[0], -1))
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      int(config.data_seed), x, labels, config.test_fraction)
  x_fit, y_fit, x_va, y_va = data_lib.train_test_split_arrays(
      int(config.data_seed) + 1, x_tr, y_tr, config.valid_fraction)
  as_dict = lambda a, b: {"x": jnp.asarray(a), "y": jnp.asarray(b)}
  return (as_dict(x_tr, y_tr), as_dict(x_fit, y_fit), as_dict(x_va, y_va),
          as_dict(x_te, y_te))


def chain_scores(probs: np.ndarray, y: np.ndarray) -> dict:
  """``probs [C, S, N, K]`` per chain: accuracy and NLL of the last draw and
  of the average over the chain's draws (each ``[C]``), and the running
  accuracy of the average over the first ``s`` draws (``[C, S]``)."""
  probs = np.asarray(probs, np.float64)
  y = np.asarray(y)

  def acc(p):
    return np.mean(np.argmax(p, -1) == y, axis=-1)

  def nll(p):
    py = np.take_along_axis(p, y[(None,) * (p.ndim - 2) + (slice(None),
                                                           None)], -1)[..., 0]
    return -np.mean(np.log(np.clip(py, 1e-12, None)), axis=-1)

  avg = probs.mean(axis=1)
  running = np.cumsum(probs, axis=1) / np.arange(1, probs.shape[1] + 1)[
      None, :, None, None]
  return {"acc_last": acc(probs[:, -1]), "acc_avg": acc(avg),
          "nll_last": nll(probs[:, -1]), "nll_avg": nll(avg),
          "acc_running": acc(running)}


def _fit_probs(post, key, train, x_eval, hp, num_chains):
  """Fit, then predictive probabilities ``[C, S, M, K]`` on ``x_eval``."""
  state, hist = jax.jit(post.fit)(key, train, hp)
  probs = post.predict(state, x_eval, key, hp)["probs"]  # [C*S, M, K]
  probs = np.asarray(probs).reshape((num_chains, -1) + probs.shape[1:])
  return probs, hist


def _mean_se(a):
  a = np.asarray(a, np.float64)
  return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a)))


def run(config, workdir: str) -> dict:
  t_start = time.perf_counter()
  train, fit_part, valid, test = load(config)
  module = networks.MLP(tuple(config.hidden) + (10,),
                        activation=config.activation)
  model = post_lib.Model(module, lambda hp: likelihoods.categorical(10),
                         lambda hp: priors.gaussian(config.prior_scale))
  rcfg = config.registry
  rcfg.sgld.num_chains = int(config.num_seeds)
  post = registry.build("sgld", model, rcfg)
  key = jax.random.key(int(config.data_seed))
  c = int(config.num_seeds)
  selection = []
  for i, lr in enumerate(config.learning_rates):
    hp = registry.default_hparams("sgld", rcfg, {"learning_rate": float(lr)})
    probs, _ = _fit_probs(post, jax.random.fold_in(key, i), fit_part,
                          valid["x"], hp, c)
    s = chain_scores(probs, valid["y"])
    row = {"learning_rate": float(lr),
           "valid_nll_avg": float(np.mean(s["nll_avg"])),
           "valid_acc_avg": float(np.mean(s["acc_avg"]))}
    selection.append(row)
    print(f"eta {lr}: valid NLL {row['valid_nll_avg']:.3f}, acc "
          f"{row['valid_acc_avg']:.3f}", flush=True)
  finite = [r for r in selection if np.isfinite(r["valid_nll_avg"])]
  if not finite:
    raise RuntimeError("every SGLD step size diverged on the validation set "
                       f"({[r['learning_rate'] for r in selection]})")
  best = min(finite, key=lambda r: r["valid_nll_avg"])["learning_rate"]
  hp = registry.default_hparams("sgld", rcfg, {"learning_rate": best})
  t0 = time.perf_counter()
  probs, hist = _fit_probs(post, jax.random.fold_in(key, 1000), train,
                           test["x"], hp, c)
  secs = time.perf_counter() - t0
  s = chain_scores(probs, test["y"])
  rows = []
  for name in ("avg", "last"):
    acc_m, acc_se = _mean_se(s[f"acc_{name}"])
    nll_m, nll_se = _mean_se(s[f"nll_{name}"])
    rows.append({"predictive": "averaged" if name == "avg" else "last draw",
                 "test_accuracy": acc_m, "test_accuracy_se": acc_se,
                 "test_nll": nll_m, "test_nll_se": nll_se,
                 "blackjax_mnist": PUBLISHED["averaged" if name == "avg"
                                             else "last"]})
  diff_m, diff_se = _mean_se(s["acc_avg"] - s["acc_last"])
  ens = probs.mean(axis=(0, 1))
  res = {"rows": rows, "selection": selection, "learning_rate": best,
         "accuracy_gain": diff_m, "accuracy_gain_se": diff_se,
         "per_chain": {k: v.tolist() for k, v in s.items()},
         "all_chains_accuracy": float(np.mean(np.argmax(ens, -1)
                                              == np.asarray(test["y"]))),
         "rhat_weights_max": (float(np.max(hist["rhat"])) if "rhat" in hist
                              else None),
         "num_train": int(train["y"].shape[0]),
         "num_test": int(test["y"].shape[0]), "seconds": secs,
         "total_seconds": time.perf_counter() - t_start,
         "config": config.to_dict(), "published": PUBLISHED}
  load_avg = open("/proc/loadavg").read().split()[:3]
  table = (results_lib.markdown_table(rows, [
      "predictive", "test_accuracy", "test_accuracy_se", "test_nll",
      "test_nll_se", "blackjax_mnist"], precision=4)
      + f"\naveraged - last (paired over {c} chains): {diff_m:+.4f} +- "
      f"{diff_se:.4f}; all {c} chains pooled: "
      f"{res['all_chains_accuracy']:.4f}; eta = {best} (validation NLL)\n\n"
      + results_lib.markdown_table(selection, [
          "learning_rate", "valid_nll_avg", "valid_acc_avg"], precision=4)
      + f"\nload average at the end: {' '.join(load_avg)}\n")
  results_lib.write_outputs(workdir, res, table)
  with metric_writers.open_run(workdir, "sgld") as w:
    run_m = s["acc_running"].mean(axis=0)
    last_m = np.mean([np.mean(np.argmax(probs[:, j], -1)
                              == np.asarray(test["y"]), axis=-1)
                      for j in range(probs.shape[1])], axis=1)
    for j in range(probs.shape[1]):
      w.write_scalars(j + 1, {"test/accuracy_running_average": run_m[j],
                              "test/accuracy_single_draw": last_m[j]})
  plt = results_lib.pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  draws = np.arange(1, probs.shape[1] + 1)
  ax.plot(draws, run_m, label="average of the first s draws")
  ax.plot(draws, last_m, label="draw s alone")
  ax.set_xlabel("kept draw s (per chain)")
  ax.set_ylabel(f"test accuracy (mean over {c} chains)")
  ax.set_title(f"SGLD on 8x8 digits, eta = {best}")
  ax.legend()
  results_lib.save_figure(fig, os.path.join(workdir, "sgld_digits.png"))
  return res


if __name__ == "__main__":
  launch.main("sgld_digits", run)
