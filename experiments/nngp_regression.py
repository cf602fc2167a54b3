r"""NNGP regression vs an RBF GP vs a MAP network vs a mean-field BNN.

Methods (``config.methods``), all fitted on standardised targets:

* ``nngp_gp``: exact GP with the NNGP kernel of a deep ReLU (or erf) net
  (:mod:`jaxbdl.gaussian_processes.nngp`, Lee et al. 2018); sigma_w2, sigma_b2 and the noise
  variance maximise the log marginal likelihood (Adam on softplus
  parameters, :func:`jaxbdl.gaussian_processes.gp.optimise_hyperparameters`).
* ``rbf_gp``: the same with an RBF kernel (lengthscale, variance).
* ``map_net``: a :class:`jaxbdl.nn.networks.MLP` trained to the MAP of a Gaussian
  prior with a learned homoscedastic noise scale (the core registry's
  ``map``); predictive N(f(x), s^2).
* ``mfvi_bnn``: the same MLP with a mean-field Gaussian posterior trained on
  the ELBO (the registry's ``mfvi``); predictive = mixture over posterior
  samples.

(a) 1-D gap data (:func:`jaxbdl.data.gap_regression`): predictive mean and
+-2 sd bands of y on a grid (``gap_predictive.png``), and RMSE / test
log-likelihood on fresh in-distribution points and on points in the gap.

(b) UCI data sets (``--data_dir``, comma-separated folders in the standard
layout, :func:`jaxbdl.data.load_uci`): every method runs on all splits as
ONE vmapped program (splits stacked when their sizes agree); RMSE and test
log-likelihood in ORIGINAL units (RMSE x y_std; LL - log y_std), mean +- SE
(std ddof 0 / sqrt(#splits)) over splits. GPs on training sets larger than
``config.gp.max_train`` use a random subset of that size (stated in the
table).

Run::

  python -m experiments.nngp_regression --workdir workdirs/nngp_regression \
      [--config experiments/configs/nngp_regression.py[:quick]] \
      [--data_dir ../shared/data/uci/yacht,../shared/data/uci/concrete] \
      [--num_splits 5]

Outputs in ``--workdir``: ``results.json``, ``results.md``,
``gap_predictive.png``.

References:
  Lee et al. (2018), Deep Neural Networks as Gaussian Processes, ICLR.
  Rasmussen & Williams (2006), GPs for Machine Learning, Ch. 2, 5.
  Blundell et al. (2015), Weight Uncertainty in Neural Networks, ICML.
  Hernandez-Lobato & Adams (2015), Probabilistic Backpropagation (UCI splits).
  Foong et al. (2019), 'In-between' uncertainty in Bayesian neural networks.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import time
from typing import Callable

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from experiments import launch
from jaxbdl import data as data_lib
from jaxbdl.gaussian_processes import gp
from jaxbdl.gaussian_processes import kernels
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.gaussian_processes import nngp
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

def _define_flags() -> None:
  """Defines --workdir, --config, --data_dir, --num_splits (program only).

  Defining them at import time would make two experiment modules imported in
  one process (a test session) collide with DuplicateFlagError.
  """
  flags.DEFINE_string("workdir", None, "Output directory.", required=True)
  config_flags.DEFINE_config_file(
      "config", "experiments/configs/nngp_regression.py", "Config file.",
      lock_config=True)
  flags.DEFINE_string(
      "data_dir", None, "Comma-separated UCI data folders (standard split "
      "layout), e.g. ../shared/data/uci/yacht. Without it only the gap "
      "data run.")
  flags.DEFINE_integer(
      "num_splits", None, "Use only the first N standard splits (default: "
      "config.uci_num_splits, 0 = all).")


METHODS = ("nngp_gp", "rbf_gp", "map_net", "mfvi_bnn")
GAP_COLUMNS = ("method", "split", "rmse", "log_lik", "mean_pred_std")
UCI_COLUMNS = ("dataset", "method", "num_splits", "gp_train_points",
               "rmse", "rmse_se", "log_lik", "log_lik_se", "seconds")

# A predictor maps stacked standardised data to Gaussian-mixture moments:
# (x_tr [S, N, D], y_tr [S, N], x_ev [S, M, D], key, num_epochs) ->
# (means [S, K, M], variances [S, K, M], info dict of [S, ...] arrays).
Predictor = Callable[..., tuple[jax.Array, jax.Array, dict]]


def _validate(config) -> None:
  unknown = [m for m in config.methods if m not in METHODS]
  if unknown or not config.methods:
    raise ValueError(f"unknown method(s) {unknown or '(none given)'}; valid: "
                     f"{list(METHODS)}")
  if config.nngp.activation not in nngp.ACTIVATIONS:
    raise ValueError(f"unknown NNGP activation {config.nngp.activation!r}; "
                     f"valid: {list(nngp.ACTIVATIONS)}")
  if int(config.nngp.depth) < 0:
    raise ValueError(f"config.nngp.depth must be >= 0, got {config.nngp.depth}")
  networks.get_activation(config.net.activation)      # raises on unknown
  for name, value in (("gp.num_steps", config.gp.num_steps),
                      ("gp.max_train", config.gp.max_train),
                      ("net.batch_size", config.net.batch_size),
                      ("net.gap_num_epochs", config.net.gap_num_epochs),
                      ("net.uci_num_epochs", config.net.uci_num_epochs),
                      ("vi.train_samples", config.vi.train_samples),
                      ("vi.predict_samples", config.vi.predict_samples),
                      ("gap.num_train", config.gap.num_train)):
    if int(value) < 1:
      raise ValueError(f"config.{name} must be >= 1, got {value}")
  for name, value in (("gp.init_noise_variance", config.gp.init_noise_variance),
                      ("gp.learning_rate", config.gp.learning_rate),
                      ("net.learning_rate", config.net.learning_rate),
                      ("net.prior_scale", config.net.prior_scale),
                      ("nngp.init_sigma_w2", config.nngp.init_sigma_w2),
                      ("nngp.init_sigma_b2", config.nngp.init_sigma_b2),
                      ("rbf.init_lengthscale", config.rbf.init_lengthscale),
                      ("rbf.init_variance", config.rbf.init_variance)):
    if not value > 0:
      raise ValueError(f"config.{name} must be > 0, got {value}")
  if config.gap.num_train < config.net.batch_size:
    raise ValueError(f"config.net.batch_size {config.net.batch_size} exceeds "
                     f"config.gap.num_train {config.gap.num_train}")
  if int(config.uci_num_splits) < 0:
    raise ValueError(f"config.uci_num_splits must be >= 0, got "
                     f"{config.uci_num_splits}")


# --------------------------------------------------------------------------
# Predictors: one pure per-split function each, vmapped over splits.


def _gp_predictor(kernel_fn, init_params, config) -> Predictor:
  g = config.gp

  def one(x, y, x_ev, key):
    n = x.shape[0]
    if n > g.max_train:                      # static: subset for large N
      idx = jax.random.permutation(key, n)[:g.max_train]
      x, y = x[idx], y[idx]
    fit = gp.optimise_hyperparameters(
        kernel_fn, init_params, x, y, g.init_noise_variance,
        num_steps=g.num_steps, learning_rate=g.learning_rate, jitter=g.jitter)
    k = functools.partial(kernel_fn, fit.params)
    post = gp.fit(k, x, y, fit.noise_variance, jitter=g.jitter)
    mean, var = gp.predict(k, post, x_ev, include_noise=True)
    info = {"noise_variance": fit.noise_variance, **fit.params,
            "neg_lml_first": fit.neg_log_marginal_likelihood[0],
            "neg_lml_last": fit.neg_log_marginal_likelihood[-1]}
    return mean[None], var[None], info

  batched = jax.jit(jax.vmap(one))    # compiled once per data shape

  def predictor(x, y, x_ev, key, num_epochs):
    del num_epochs
    return batched(x, y, x_ev, jax.random.split(key, x.shape[0]))

  return predictor


def _registry_predictor(config, name: str) -> Predictor:
  """The core registry's ``name`` (``map`` or ``mfvi``) on a ``config.net``
  MLP with learned homoscedastic noise and a Gaussian prior on the weights."""
  c, v = config.net, config.vi
  lik = likelihoods.gaussian(None, init_scale=float(c.init_noise_scale),
                             min_scale=float(c.min_noise_scale))
  model = posterior.mlp_model(tuple(c.hidden), 1, lambda hp: lik,
                              lambda hp: priors.gaussian(hp["prior_scale"]),
                              activation=c.activation)
  rc = registry.default_config()
  rc.batch_size = int(c.batch_size)
  rc.map.valid_fraction = 0.0
  rc.num_predict_samples = int(v.predict_samples)
  rc.mfvi.init_scale = float(v.init_scale)
  rc.mfvi.num_train_samples = int(v.train_samples)
  hp = registry.default_hparams(name, rc)
  hp.update(learning_rate=float(c.learning_rate),
            prior_scale=float(c.prior_scale))

  def one(x, y, x_ev, key, num_epochs):
    rc_e = rc.copy_and_resolve_references()
    rc_e.num_epochs = num_epochs
    method = registry.build(name, model, rc_e)
    k_fit, k_pred = jax.random.split(key)
    state, history = method.fit(k_fit, {"x": x, "y": y}, hp)
    pred = method.predict(state, x_ev, k_pred, hp)
    info = {"loss_first": history["loss"][0], "loss_last": history["loss"][-1],
            "finite": jnp.min(history["finite"]),
            "noise_variance": jnp.mean(pred["variance"])}
    return pred["mean"], pred["variance"], info

  # Compiled once per (data shape, num_epochs).
  batched = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, None)),
                    static_argnums=4)

  def predictor(x, y, x_ev, key, num_epochs):
    return batched(x, y, x_ev, jax.random.split(key, x.shape[0]), num_epochs)

  return predictor


def make_predictors(config) -> dict[str, Predictor]:
  """The configured methods as predictors (see ``Predictor``)."""
  n = config.nngp
  nngp_kernel = nngp.make_kernel_fn(int(n.depth), n.activation)
  rbf_kernel = kernels.make_kernel_fn("rbf")
  all_predictors = {
      "nngp_gp": lambda: _gp_predictor(
          nngp_kernel, {"sigma_w2": n.init_sigma_w2,
                        "sigma_b2": n.init_sigma_b2}, config),
      "rbf_gp": lambda: _gp_predictor(
          rbf_kernel, {"lengthscale": config.rbf.init_lengthscale,
                       "variance": config.rbf.init_variance}, config),
      "map_net": lambda: _registry_predictor(config, "map"),
      "mfvi_bnn": lambda: _registry_predictor(config, "mfvi"),
  }
  return {m: all_predictors[m]() for m in config.methods}


def score(means, variances, y) -> dict[str, np.ndarray]:
  """Per-split RMSE / mean LL (standardised units) of Gaussian mixtures.

  means, variances: ``[S, K, M]``; y: ``[S, M]``. Returns ``[S]`` arrays.
  """
  mean, var = jax.vmap(metrics.mixture_mean_variance)(means, variances)
  ll = jax.vmap(metrics.gaussian_predictive_log_likelihood)(y, means,
                                                            variances)
  return {"rmse": np.sqrt(np.mean((np.asarray(y) - np.asarray(mean)) ** 2, 1)),
          "log_lik": np.mean(np.asarray(ll), 1),
          "mean_pred_std": np.mean(np.sqrt(np.asarray(var)), 1)}


def _check_info(method: str, info: dict) -> None:
  if "finite" in info and not np.all(np.asarray(info["finite"]) > 0):
    raise FloatingPointError(f"{method}: non-finite loss or gradient during "
                             "training; lower config.net.learning_rate")


# --------------------------------------------------------------------------
# (a) Gap data.


def run_gap(config, predictors, key) -> tuple[list, dict, dict]:
  g = config.gap
  k_tr, k_te, k_gx, k_gy, k_fit = jax.random.split(key, 5)
  kw = dict(noise_std=g.noise_std, num_grid=g.num_grid)
  tr = data_lib.gap_regression(k_tr, g.num_train, **kw)
  te = data_lib.gap_regression(k_te, g.num_test, **kw)
  x_gap = jax.random.uniform(k_gx, (g.num_gap_test, 1), minval=-0.3,
                             maxval=0.3)
  y_gap = data_lib.sine_2pi(x_gap[:, 0]) + g.noise_std * jax.random.normal(
      k_gy, (g.num_gap_test,))
  x_tr, y_tr = np.asarray(tr.x), np.asarray(tr.y)
  train.check_finite_data({"x": x_tr, "y": y_tr}, "gap data")
  y_mean, y_std = float(y_tr.mean()), float(y_tr.std())
  std = lambda y: (np.asarray(y) - y_mean) / y_std
  sets = {"train": (x_tr, y_tr), "test": (np.asarray(te.x), np.asarray(te.y)),
          "gap": (np.asarray(x_gap), np.asarray(y_gap))}
  x_eval = np.concatenate([sets[s][0] for s in sets] + [np.asarray(tr.x_grid)])
  sizes = np.cumsum([sets[s][0].shape[0] for s in sets])
  rows, grid, info_all = [], {}, {}
  for i, (name, predictor) in enumerate(predictors.items()):
    t0 = time.time()
    means, variances, info = predictor(
        x_tr[None], std(y_tr)[None].astype(np.float32), x_eval[None],
        jax.random.fold_in(k_fit, i), int(config.net.gap_num_epochs))
    _check_info(name, info)
    # Back to original units: y = y_mean + y_std * y_standardised.
    means = y_mean + y_std * np.asarray(means[0])            # [K, M_all]
    variances = y_std ** 2 * np.asarray(variances[0])
    start = 0
    for s, end in zip(sets, sizes):
      sc = score(means[None, :, start:end], variances[None, :, start:end],
                 np.asarray(sets[s][1])[None])
      rows.append({"method": name, "split": s,
                   **{k: float(v[0]) for k, v in sc.items()}})
      start = end
    grid[name] = (means[:, sizes[-1]:], variances[:, sizes[-1]:])
    info_all[name] = {k: np.asarray(v)[0] for k, v in info.items()}
    logging.info("gap data, %s: %.1fs", name, time.time() - t0)
  plot_data = {"x_train": x_tr, "y_train": y_tr,
               "x_grid": np.asarray(tr.x_grid), "f_grid": np.asarray(tr.f_grid)}
  return rows, {"grid": grid, "data": plot_data}, info_all


def _plot_gap(plot, path: str) -> None:
  plt = results_lib.pyplot()
  names = list(plot["grid"])
  fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.8),
                           squeeze=False)
  d = plot["data"]
  xg = d["x_grid"][:, 0]
  for ax, name in zip(axes[0], names):
    means, variances = plot["grid"][name]
    mean, var = metrics.mixture_mean_variance(means, variances)
    mean, sd = np.asarray(mean), np.sqrt(np.asarray(var))
    ax.axvspan(-0.3, 0.3, color="0.92", label="gap")
    ax.fill_between(xg, mean - 2 * sd, mean + 2 * sd, color="C0", alpha=0.3,
                    label="mean +- 2 sd (y)")
    ax.plot(xg, mean, color="C0", lw=2, label="predictive mean")
    ax.plot(xg, d["f_grid"], "k--", lw=1, label="true f")
    ax.scatter(d["x_train"][:, 0], d["y_train"], s=6, color="k",
               label="train")
    ax.set_title(name)
    ax.set_xlabel("x")
    ax.set_ylim(-3, 3)
  axes[0][0].set_ylabel("y")
  axes[0][0].legend(loc="lower left", fontsize=7)
  results_lib.save_figure(fig, path)


# --------------------------------------------------------------------------
# (b) UCI data.


def _split_groups(dataset, splits):
  """Stacked UCISplit groups (one group when all splits have equal sizes)."""
  try:
    return [data_lib.uci_stacked_splits(dataset, splits)]
  except ValueError:
    return [data_lib.uci_stacked_splits(dataset, [s]) for s in splits]


def run_uci(config, predictors, data_dir: str, num_splits: int, key) -> tuple:
  dataset = data_lib.load_uci(data_dir)
  n = dataset.n_splits if num_splits == 0 else min(num_splits,
                                                   dataset.n_splits)
  splits = list(range(n))
  groups = _split_groups(dataset, splits)
  rows, infos = [], {}
  for i, (name, predictor) in enumerate(predictors.items()):
    t0 = time.time()
    per_split = {"rmse": [], "log_lik": []}
    for g_i, grp in enumerate(groups):
      train.check_finite_data({"x": grp.x_train, "y": grp.y_train},
                              dataset.name)
      means, variances, info = predictor(
          grp.x_train, grp.y_train, grp.x_test,
          jax.random.fold_in(jax.random.fold_in(key, i), g_i),
          int(config.net.uci_num_epochs))
      _check_info(f"{dataset.name}/{name}", info)
      sc = score(means, variances, grp.y_test)
      y_std = np.asarray(grp.y_std, np.float64)              # [S]
      per_split["rmse"].append(sc["rmse"] * y_std)            # original units
      per_split["log_lik"].append(sc["log_lik"] - np.log(y_std))
      infos.setdefault(name, []).append(
          {k: np.asarray(v) for k, v in info.items()})
    rmse = np.concatenate(per_split["rmse"])
    ll = np.concatenate(per_split["log_lik"])
    n_train = groups[0].x_train.shape[-2]
    rows.append({
        "dataset": dataset.name, "method": name, "num_splits": n,
        "gp_train_points": (min(n_train, int(config.gp.max_train))
                            if name.endswith("_gp") else n_train),
        "rmse": float(rmse.mean()), "rmse_se": float(rmse.std() / math.sqrt(n)),
        "log_lik": float(ll.mean()),
        "log_lik_se": float(ll.std() / math.sqrt(n)),
        "seconds": time.time() - t0})
    logging.info("%s %s: RMSE %.3f LL %.3f (%d splits, %.1fs)", dataset.name,
                 name, rmse.mean(), ll.mean(), n, time.time() - t0)
  return rows, infos


def run(config, workdir: str, data_dirs=(), num_splits: int | None = None
        ) -> dict:
  """Runs (a) the gap data and (b) each UCI folder in ``data_dirs``.

  Args:
    config: see ``experiments/configs/nngp_regression.py``.
    workdir: output folder.
    data_dirs: UCI folders (standard layout); empty: gap data only.
    num_splits: first N splits per data set (None: config.uci_num_splits;
      0: all).

  Returns:
    the results dict written to ``results.json``: ``gap_rows`` (per method
    and evaluation set), ``uci_rows`` (per data set and method, original
    units, mean and SE over splits), ``gap_info`` / ``uci_info`` (fitted
    hyper-parameters and losses), ``config``.

  Raises:
    FileNotFoundError / ValueError: a data_dir is missing or malformed
      (checked before any training).
  """
  _validate(config)
  num_splits = int(config.uci_num_splits if num_splits is None else num_splits)
  if num_splits < 0:
    raise ValueError(f"num_splits must be >= 0, got {num_splits}")
  data_dirs = [d for d in data_dirs if d]
  for d in data_dirs:                      # fail fast, before any training
    if not os.path.isdir(os.path.expanduser(d)):
      raise FileNotFoundError(f"--data_dir: UCI data folder not found: {d}")
    data_lib.load_uci(d)
  workdir = results_lib.ensure_workdir(workdir)
  predictors = make_predictors(config)
  key = jax.random.key(config.seed)
  k_gap, k_uci = jax.random.split(key)
  gap_rows, plot, gap_info = run_gap(config, predictors, k_gap)
  _plot_gap(plot, os.path.join(workdir, "gap_predictive.png"))
  uci_rows, uci_info = [], {}
  for d_i, d in enumerate(data_dirs):
    rows, info = run_uci(config, predictors, d, num_splits,
                         jax.random.fold_in(k_uci, d_i))
    uci_rows += rows
    uci_info[rows[0]["dataset"]] = info
  results = {"gap_rows": gap_rows, "uci_rows": uci_rows,
             "gap_info": gap_info, "uci_info": uci_info,
             "config": config.to_dict(), "data_dirs": data_dirs,
             "jax_backend": jax.default_backend()}
  results_lib.write_outputs(workdir, results, _table(results))
  return results


def _table(results) -> str:
  text = ("## Gap data (original units)\n\n" +
          results_lib.markdown_table(results["gap_rows"], GAP_COLUMNS, 4))
  if results["uci_rows"]:
    text += ("\n## UCI (original units, mean and SE over splits)\n\n" +
             results_lib.markdown_table(results["uci_rows"], UCI_COLUMNS, 3))
  return text


def main(argv):
  del argv
  launch.quiet_logs(sys.argv)
  workdir = results_lib.ensure_workdir(flags.FLAGS.workdir)
  data_dirs = (flags.FLAGS.data_dir or "").split(",")
  res = run(flags.FLAGS.config, workdir, data_dirs, flags.FLAGS.num_splits)
  print(_table(res))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
