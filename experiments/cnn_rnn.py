r"""CNN and RNNs (LSTM, GRU) on sklearn digits, and RNN forecasting of sinusoids.

Three studies, each vmapped over ``num_seeds`` seeds (one compiled program per
network):

1. ``jaxbdl.nn.networks.CNN`` on the 8x8 digits (fixed 80/20 split), trained by
   maximum likelihood with the categorical likelihood (softmax cross-entropy)
   through ``jaxbdl.training.train.make_fit``; test accuracy.
2. ``jaxbdl.nn.networks.RNN`` (LSTM and GRU) reading each digit row by row, a
   sequence of 8 rows of 8 pixels; test accuracy.
3. The same RNNs forecasting the next value of noisy sinusoids
   (``jaxbdl.data.noisy_sinusoid_sequences``) with a Gaussian likelihood
   (squared error); test MSE against the naive last-value forecast
   ``s_{t+1} = s_t`` and the noise floor ``noise_std^2``.

Run::

  python -m experiments.cnn_rnn --workdir /tmp/cnn_rnn \
      [--config experiments/configs/cnn_rnn.py[:quick]]

Writes ``results.json``, ``results.md``, ``learning_curves.png`` and
``forecast.png`` to the workdir.
"""
from __future__ import annotations

import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import launch
from jaxbdl import data as data_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.nn import objectives
from jaxbdl.bayes import priors
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train


_CELLS = ("lstm", "gru")
_POOLS = ("avg", "max")


def _log_prior(prior_scale: float):
  if prior_scale == 0:
    return lambda p: priors.flat().log_prob({}, p)
  return lambda p: priors.gaussian(prior_scale).log_prob({}, p)


def _per_datum_loss(model, log_likelihood, log_prior, num_data: int):
  """Mean negative log joint per datum (same minimiser as the full one)."""
  return objectives.scale_loss(
      objectives.make_map_loss_fn(objectives.flax_train_apply(model),
                                  log_likelihood, log_prior, num_data),
      1.0 / num_data)


def fit_over_seeds(model, loss_fn, optimizer, train_data, x_init, key,
                   num_seeds: int, num_epochs: int, batch_size: int):
  """Initialises and fits ``num_seeds`` networks as one vmapped program.

  Returns:
    ``(params, history)``: parameters with a leading seed axis ``[S, ...]``,
    history arrays ``[S, num_epochs]``.
  """
  fit = train.make_fit(loss_fn, optimizer, num_epochs=num_epochs,
                       batch_size=batch_size)

  def one(seed_key, data):
    init_key, fit_key = jax.random.split(seed_key)
    params = model.init(init_key, x_init)["params"]
    state, history = fit(train.init_train_state(params, optimizer), data,
                         fit_key)
    return state.params, history

  keys = jax.random.split(key, num_seeds)
  return jax.jit(jax.vmap(one, in_axes=(0, None)))(keys, train_data)


def _predict(model, params_s, x):
  """Outputs ``[S, N, ...]`` of the seed-stacked ``params_s`` on ``x``."""
  return jax.jit(jax.vmap(lambda p: model.apply({"params": p}, x)))(params_s)


def _summary(values) -> dict:
  v = np.asarray(values, np.float64)
  return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
          "max": float(v.max()), "per_seed": v.tolist()}


def _validate(config: ml_collections.ConfigDict) -> None:
  if config.num_seeds < 1:
    raise ValueError(f"num_seeds must be >= 1, got {config.num_seeds}")
  if config.cnn.pool not in _POOLS:
    raise ValueError(f"unknown cnn.pool {config.cnn.pool!r}; valid: {_POOLS}")
  for section in ("rnn_digits", "forecast"):
    for cell in config[section].cells:
      if cell not in _CELLS:
        raise ValueError(f"unknown {section}.cells entry {cell!r}; valid: "
                         f"{list(_CELLS)}")
  f = config.forecast
  if not 0 <= f.warmup < f.length:
    raise ValueError(f"forecast.warmup must be in [0, length={f.length}), got "
                     f"{f.warmup}")


def _digits(config):
  images, labels = data_lib.load_digits()
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      config.split_seed, images, labels, config.test_fraction)
  return x_tr, y_tr, x_te, y_te


def _classification(model, opt_cfg, x_tr, y_tr, x_te, y_te, key, num_seeds,
                    prior_scale=0.0):
  loss_fn = _per_datum_loss(model, likelihoods.categorical_log_prob,
                            _log_prior(prior_scale), x_tr.shape[0])
  params, history = fit_over_seeds(
      model, loss_fn, optax.adam(opt_cfg.learning_rate), (x_tr, y_tr),
      x_tr[:1], key, num_seeds, opt_cfg.num_epochs, opt_cfg.batch_size)
  logits = _predict(model, params, x_te)
  acc = jax.vmap(metrics.accuracy, in_axes=(None, 0))(y_te, logits)
  return np.asarray(acc), np.asarray(history["loss"])


def _forecast_loglik(warmup: int):
  """Gaussian (unit precision) log density of the steps after ``warmup``.

  ``y, outputs: [B, T, 1] -> [B]``, summed over steps ``t >= warmup``.
  """
  def loglik(y, outputs):
    return jnp.sum(likelihoods.normal_log_prob(y[:, warmup:, 0],
                                               outputs[:, warmup:, 0], 1.0), -1)
  return loglik


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the three studies; writes results.json, results.md and plots."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t_start = time.time()
  key = jax.random.key(config.seed)
  k_cnn, k_rnn, k_fc_data, k_fc = jax.random.split(key, 4)
  x_tr, y_tr, x_te, y_te = _digits(config)
  train.check_finite_data((x_tr, y_tr), "digits train")
  results: dict[str, Any] = {"config": config.to_dict(),
                             "num_train": int(x_tr.shape[0]),
                             "num_test": int(x_te.shape[0])}
  rows, curves = [], {}

  # 1. CNN.
  c = config.cnn
  cnn = networks.CNN(num_classes=10, features=tuple(c.features),
                     hidden=c.hidden, dropout_rate=c.dropout_rate, pool=c.pool)
  t0 = time.time()
  acc, loss = _classification(cnn, c, x_tr, y_tr, x_te, y_te, k_cnn,
                              config.num_seeds, c.prior_scale)
  results["cnn"] = {"test_accuracy": _summary(acc),
                    "seconds": time.time() - t0,
                    "num_params": networks.count_params(cnn.init(
                        jax.random.key(0), x_tr[:1])["params"])}
  curves["CNN"] = loss
  rows.append({"task": "digits", "model": "CNN", "metric": "test accuracy",
               "mean": float(acc.mean()), "std": float(acc.std()),
               "baseline": ""})
  logging.info("CNN test accuracy %s", acc)

  # 2. RNNs on digits row by row: [N, 8, 8] is already [N, T, D].
  r = config.rnn_digits
  results["rnn_digits"] = {}
  for i, cell in enumerate(r.cells):
    model = networks.RNN(cell=cell, hidden_size=r.hidden_size, out_features=10)
    t0 = time.time()
    acc, loss = _classification(model, r, x_tr, y_tr, x_te, y_te,
                                jax.random.fold_in(k_rnn, i), config.num_seeds)
    results["rnn_digits"][cell] = {"test_accuracy": _summary(acc),
                                   "seconds": time.time() - t0}
    curves[f"{cell.upper()} (digits rows)"] = loss
    rows.append({"task": "digits rows", "model": cell.upper(),
                 "metric": "test accuracy", "mean": float(acc.mean()),
                 "std": float(acc.std()), "baseline": ""})
    logging.info("%s digits test accuracy %s", cell, acc)

  # 3. RNN forecasting.
  f = config.forecast
  k_tr, k_te = jax.random.split(k_fc_data)
  seq_tr = data_lib.noisy_sinusoid_sequences(k_tr, f.num_train, f.length,
                                             f.noise_std)
  inp_te, tgt_te = data_lib.noisy_sinusoid_sequences(k_te, f.num_test,
                                                     f.length, f.noise_std)
  w = f.warmup
  naive_mse = float(jnp.mean((inp_te[:, w:] - tgt_te[:, w:]) ** 2))
  results["forecast"] = {"naive_last_value_mse": naive_mse,
                         "noise_floor_mse": f.noise_std ** 2}
  example = None
  for i, cell in enumerate(f.cells):
    model = networks.RNN(cell=cell, hidden_size=f.hidden_size, out_features=1,
                         return_sequences=True)
    loss_fn = _per_datum_loss(model, _forecast_loglik(w), lambda p: 0.0,
                              f.num_train)
    t0 = time.time()
    params, history = fit_over_seeds(
        model, loss_fn, optax.adam(f.learning_rate), seq_tr,
        seq_tr[0][:1], jax.random.fold_in(k_fc, i), config.num_seeds,
        f.num_epochs, f.batch_size)
    pred = _predict(model, params, inp_te)  # [S, N, T, 1]
    mse = np.asarray(jnp.mean((pred[:, :, w:] - tgt_te[None, :, w:]) ** 2,
                              axis=(1, 2, 3)))
    results["forecast"][cell] = {"test_mse": _summary(mse),
                                 "seconds": time.time() - t0}
    curves[f"{cell.upper()} (forecast)"] = np.asarray(history["loss"])
    rows.append({"task": "sinusoid forecast", "model": cell.upper(),
                 "metric": "test MSE", "mean": float(mse.mean()),
                 "std": float(mse.std()), "baseline": naive_mse})
    if example is None:
      example = (cell, np.asarray(pred[0, 0, :, 0]))
    logging.info("%s forecast MSE %s (naive %.4f)", cell, mse, naive_mse)

  results["seconds"] = time.time() - t_start
  table = results_lib.markdown_table(
      rows, ["task", "model", "metric", "mean", "std", "baseline"], 4)
  table = (f"Mean and std over {config.num_seeds} seeds; baseline = naive "
           f"last-value forecast (noise floor {f.noise_std ** 2:.4f}).\n\n"
           + table)
  results["table"] = rows
  results_lib.write_outputs(workdir, results, table)
  _plot(workdir, curves, np.asarray(inp_te[0, :, 0]),
        np.asarray(tgt_te[0, :, 0]), example, w)
  return results


def _plot(workdir, curves, inputs, targets, example, warmup):
  plt = results_lib.pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, loss in curves.items():  # loss: [S, E].
    mean = loss.mean(axis=0)
    ax.plot(np.arange(1, mean.shape[0] + 1), mean, label=name)
  ax.set_yscale("log")
  ax.set_xlabel("epoch")
  ax.set_ylabel("train loss per datum (mean over seeds)")
  ax.legend(fontsize=8)
  results_lib.save_figure(fig, f"{workdir}/learning_curves.png")

  fig, ax = plt.subplots(figsize=(7, 3.5))
  t = np.arange(inputs.shape[0])
  ax.plot(t + 1, targets, ".", color="k", ms=4, label="observed s_{t+1}")
  ax.plot(t + 1, inputs, "--", color="grey", lw=1, label="naive: s_t")
  if example is not None:
    cell, pred = example
    ax.plot(t + 1, pred, color="C1", lw=2, label=f"{cell.upper()} forecast")
  ax.axvline(warmup + 0.5, color="C2", ls=":", label="end of warm-up")
  ax.set_xlabel("time step")
  ax.legend(fontsize=8)
  results_lib.save_figure(fig, f"{workdir}/forecast.png")


if __name__ == "__main__":
  launch.main("cnn_rnn", run)
