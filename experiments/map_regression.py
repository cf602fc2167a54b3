r"""MAP regression ensembles with uncertainty bands on 1-D data with a gap.

Each ensemble member is a MAP estimate: it minimises the negative log joint
``-sum_n log N(y_n; mu(x_n), sigma(x_n)^2) - log N(W; 0, s^2 I)`` (Gaussian
likelihood, Gaussian prior = weight decay), with either a learned homoscedastic
noise scale or an input-dependent (heteroscedastic) one. ``M`` members from
different initialisations and minibatch orders train as ONE vmapped program
(``jaxbdl.training.train.make_fit``). The predictive is the equal-weight mixture of the
members' Gaussians (Lakshminarayanan et al. 2017): mean ``mean_m mu_m`` and
variance ``mean_m sigma_m^2 + var_m mu_m``; the plot shows the mean and
``+-2`` standard deviations over a grid that covers the gap, and the table
reports RMSE and the mixture's test log-likelihood on the training data, a
fresh test sample, and points inside the gap.

Run::

  python -m experiments.map_regression --workdir workdirs/map_regression \
      [--config experiments/configs/map_regression.py[:quick]]

Outputs in ``--workdir``: ``results.json``, ``results.md``, ``predictive.png``,
``loss.png``.

References:
  Lakshminarayanan, Pritzel & Blundell (2017), Simple and scalable predictive
    uncertainty estimation using deep ensembles, NeurIPS, Sec. 2.4.
  Nix & Weigend (1994), Estimating the mean and variance of the target
    probability distribution (heteroscedastic noise).
  Foong et al. (2019), 'In-between' uncertainty in Bayesian neural networks.
"""
from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import launch
from jaxbdl import data as data_lib
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry



TABLE_COLUMNS = ("noise_model", "split", "rmse", "log_lik", "mean_pred_std")
# Evaluation sets: the training data, fresh points from the training
# distribution, and points inside the gap (in-between inputs).
EVAL_SPLITS = ("train", "test", "gap")


# --------------------------------------------------------------------------
# Noise models: the core's likelihoods, by name.


NOISE_MODELS = {
    "homoscedastic": lambda c: likelihoods.gaussian(
        None, init_scale=float(c.init_noise_scale),
        min_scale=float(c.min_noise_scale)),
    "heteroscedastic": lambda c: likelihoods.heteroscedastic_gaussian(
        float(c.min_noise_scale)),
}


def ensemble_method(config, name: str):
  """``(Posterior, hp)``: the registry's deep ensemble of ``config.num_members``
  MAP networks with the noise model ``name`` and a Gaussian prior of scale
  ``config.prior_scale`` on the network weights (the learned noise scale has a
  flat prior)."""
  lik = NOISE_MODELS[name](config)
  model = posterior.mlp_model(tuple(config.model.hidden), lik.num_outputs,
                              lambda hp: lik,
                              lambda hp: priors.gaussian(hp["prior_scale"]),
                              activation=config.model.activation)
  c = registry.default_config()
  c.num_epochs, c.batch_size = int(config.num_epochs), int(config.batch_size)
  c.ensemble.num_members = int(config.num_members)
  hp = registry.default_hparams("ensemble", c)
  hp.update(learning_rate=float(config.learning_rate),
            prior_scale=float(config.prior_scale))
  return registry.build("ensemble", model, c), hp


def _validate(config) -> None:
  unknown = [m for m in config.noise_models if m not in NOISE_MODELS]
  if unknown or not config.noise_models:
    raise ValueError(f"unknown noise model(s) {unknown or '(none given)'}; "
                     f"valid: {sorted(NOISE_MODELS)}")
  for name in ("num_members", "num_epochs", "batch_size"):
    if int(config[name]) < 1:
      raise ValueError(f"config.{name} must be >= 1, got {config[name]}")
  if config.batch_size > config.data.num_train:
    raise ValueError(f"config.batch_size {config.batch_size} exceeds "
                     f"data.num_train {config.data.num_train}")
  for name in ("prior_scale", "learning_rate", "init_noise_scale"):
    if not config[name] > 0:
      raise ValueError(f"config.{name} must be > 0, got {config[name]}")
  if not 0 <= config.min_noise_scale < config.init_noise_scale:
    raise ValueError("need 0 <= config.min_noise_scale < init_noise_scale, "
                     f"got {config.min_noise_scale}, {config.init_noise_scale}")
  networks.get_activation(config.model.activation)  # Raises on unknown names.


# --------------------------------------------------------------------------
# Data.


def make_data(config, key: jax.Array) -> dict[str, np.ndarray]:
  """Training data, an in-distribution test set, a gap test set and a grid."""
  d = config.data
  kw = dict(noise_std=d.noise_std, gap=tuple(d.gap), domain=tuple(d.domain),
            grid_range=tuple(d.grid_range), num_grid=d.num_grid)

  @jax.jit  # One compiled program for all the sampling.
  def sample(key):
    k_train, k_test, k_gap_x, k_gap_y = jax.random.split(key, 4)
    tr = data_lib.gap_regression(k_train, d.num_train, **kw)
    te = data_lib.gap_regression(k_test, d.num_test, **kw)
    x_gap = jax.random.uniform(k_gap_x, (d.num_gap_test, 1), minval=d.gap[0],
                               maxval=d.gap[1])
    y_gap = data_lib.sine_2pi(x_gap[:, 0]) + d.noise_std * jax.random.normal(
        k_gap_y, (d.num_gap_test,))
    return dict(x_train=tr.x, y_train=tr.y, x_test=te.x, y_test=te.y,
                x_gap=x_gap, y_gap=y_gap, x_grid=tr.x_grid, f_grid=tr.f_grid)

  out = sample(key)
  out = {k: np.asarray(v, np.float32) for k, v in out.items()}
  for k, v in out.items():
    data_lib.check_finite(k, v)
  return out


# --------------------------------------------------------------------------
# Training and prediction.


def train_ensemble(config, name: str, x: np.ndarray, y: np.ndarray,
                   key: jax.Array):
  """Trains the ensemble as one vmapped, jitted program.

  Returns:
    ``(state, history)`` with a leading member axis ``[M]`` on every leaf.
  """
  method, hp = ensemble_method(config, name)
  return jax.jit(method.fit)(key, {"x": x, "y": y}, hp)


def predict(config, name: str, state, x: np.ndarray):
  """Per-member predictive means and variances ``[M, N]``."""
  method, hp = ensemble_method(config, name)
  pred = jax.jit(method.predict)(state, x, jax.random.key(0), hp)
  return pred["mean"], pred["variance"]


@jax.jit
def pointwise_scores(means: jax.Array, variances: jax.Array,
                     y: jax.Array) -> dict[str, jax.Array]:
  """Per-point scores of the ensemble mixture predictive.

  Args:
    means, variances: ``[M, N]`` per-member predictive means and variances.
    y: ``[N]`` targets.

  Returns:
    ``{"sq_err": [N] (y - mixture mean)^2, "log_lik": [N] mixture
    log-density, "std": [N] mixture standard deviation}``.
  """
  mean, var = metrics.mixture_mean_variance(means, variances)
  return {"sq_err": jnp.square(y - mean),
          "log_lik": metrics.gaussian_predictive_log_likelihood(
              y, means, variances),
          "std": jnp.sqrt(var)}


def summarise(scores: dict[str, np.ndarray]) -> dict[str, float]:
  """RMSE, mean log-likelihood and mean predictive std of per-point scores."""
  return {"rmse": float(np.sqrt(np.mean(scores["sq_err"]))),
          "log_lik": float(np.mean(scores["log_lik"])),
          "mean_pred_std": float(np.mean(scores["std"]))}


def evaluate_ensemble(config, name: str, state,
                      data: dict[str, np.ndarray]):
  """Scores the ensemble on each of ``EVAL_SPLITS`` and predicts on the grid.

  All inputs go through one :func:`predict` and one :func:`pointwise_scores`
  call (one compilation each).

  Returns:
    ``({split: summarise(...)}, (grid means [M, G], grid variances [M, G]))``.
  """
  splits = EVAL_SPLITS + ("grid",)
  sizes = np.cumsum([data[f"x_{s}"].shape[0] for s in splits])[:-1]
  x_all = np.concatenate([data[f"x_{s}"] for s in splits])
  # The grid is scored against the noise-free f (not reported).
  y_all = np.concatenate([data[f"y_{s}"] for s in EVAL_SPLITS]
                         + [data["f_grid"]])
  means, variances = predict(config, name, state, x_all)
  scores = jax.tree.map(np.asarray, pointwise_scores(means, variances, y_all))
  per_split = {k: dict(zip(splits, np.split(v, sizes))) for k, v in
               scores.items()}
  results = {s: summarise({k: v[s] for k, v in per_split.items()})
             for s in EVAL_SPLITS}
  start = sizes[-1]
  grid = (np.asarray(means)[:, start:], np.asarray(variances)[:, start:])
  return results, grid


# --------------------------------------------------------------------------
# Plots.


def _plot_predictive(data, grid_preds, config, path: str) -> None:
  plt = results_lib.pyplot()
  names = list(grid_preds)
  fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4),
                           squeeze=False)
  xg = data["x_grid"][:, 0]
  for ax, name in zip(axes[0], names):
    means, variances = grid_preds[name]
    mean, var = metrics.mixture_mean_variance(means, variances)
    mean, std = np.asarray(mean), np.sqrt(np.asarray(var))
    ax.axvspan(*config.data.gap, color="0.92", label="gap")
    ax.fill_between(xg, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.3,
                    label="mean +- 2 sd")
    for m in range(np.asarray(means).shape[0]):
      ax.plot(xg, np.asarray(means)[m], color="C0", lw=0.6, alpha=0.5)
    ax.plot(xg, mean, color="C0", lw=2, label="ensemble mean")
    ax.plot(xg, data["f_grid"], "k--", lw=1, label="true f")
    ax.scatter(data["x_train"][:, 0], data["y_train"], s=8, color="k",
               label="train")
    ax.set_title(f"{name}, M={config.num_members}")
    ax.set_xlabel("x")
    ax.set_ylim(-3, 3)
  axes[0][0].set_ylabel("y")
  axes[0][0].legend(loc="lower left", fontsize=7)
  results_lib.save_figure(fig, path)


def _plot_loss(histories, path: str) -> None:
  """Per-member training NLL curves (the loss minus the prior term)."""
  plt = results_lib.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for i, (name, loss) in enumerate(histories.items()):
    for m in range(loss.shape[0]):
      ax.plot(loss[m], color=f"C{i}", lw=0.8,
              label=name if m == 0 else None)
  ax.set_xlabel("epoch")
  ax.set_ylabel("training NLL per datum (epoch mean)")
  ax.legend()
  results_lib.save_figure(fig, path)


# --------------------------------------------------------------------------
# Entry points.


def run(config, workdir: str) -> dict:
  """Trains one ensemble per noise model, evaluates, writes outputs.

  Returns:
    the results dict written to ``results.json``: ``rows`` (one per noise
    model and evaluation set: RMSE of the mixture mean, mean test
    log-likelihood of the mixture, mean predictive std), ``summary`` (per
    noise model: first/last-epoch loss and training NLL averaged over members,
    training seconds), ``config``, ``jax_backend``.
  """
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  key = jax.random.key(config.seed)
  k_data, k_train = jax.random.split(key)
  data = make_data(config, k_data)
  rows, grid_preds, loss_curves, summary = [], {}, {}, {}
  for i, name in enumerate(config.noise_models):
    logging.info("training %d %s members for %d epochs", config.num_members,
                 name, config.num_epochs)
    t0 = time.time()
    state, history = train_ensemble(config, name, data["x_train"],
                                     data["y_train"],
                                     jax.random.fold_in(k_train, i))
    loss = np.asarray(history["loss"])  # [M, E]
    if not np.all(np.asarray(history["finite"]) > 0):
      raise FloatingPointError(f"{name}: non-finite loss or gradient during "
                               "training; lower config.learning_rate")
    seconds = time.time() - t0
    logging.info("%s: loss %.4f -> %.4f in %.1fs", name, loss[:, 0].mean(),
                 loss[:, -1].mean(), seconds)
    split_scores, grid_preds[name] = evaluate_ensemble(
        config, name, state, data)
    rows += [{"noise_model": name, "split": s, **split_scores[s]}
             for s in EVAL_SPLITS]
    nll = np.asarray(history["nll"])  # [M, E], mean per-datum train NLL
    loss_curves[name] = nll
    summary[name] = {"loss_first": float(loss[:, 0].mean()),
                     "loss_last": float(loss[:, -1].mean()),
                     "train_nll_first": float(nll[:, 0].mean()),
                     "train_nll_last": float(nll[:, -1].mean()),
                     "train_seconds": seconds}
  results = {"rows": rows, "summary": summary, "config": config.to_dict(),
             "jax_backend": jax.default_backend()}
  table = results_lib.markdown_table(rows, TABLE_COLUMNS, precision=4)
  results_lib.write_outputs(workdir, results, table)
  _plot_predictive(data, grid_preds, config,
                   os.path.join(workdir, "predictive.png"))
  _plot_loss(loss_curves, os.path.join(workdir, "loss.png"))
  return results


if __name__ == "__main__":
  launch.main("map_regression", run,
              report=lambda res, workdir: results_lib.markdown_table(
                  res["rows"], TABLE_COLUMNS, precision=4))
