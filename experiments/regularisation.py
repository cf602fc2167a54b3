r"""Regularisation on scikit-learn's digits: plain, early stopping, dropout, batch norm.

An MLP (default 2 x 256 ReLU) trained with Adam on a fixed train / validation /
test split of the 8x8 digits. For each variant the seeds train as one vmapped
program; the experiment records training loss, validation NLL and accuracy per
epoch, the early-stopping point (best parameters restored; Prechelt 1998),
final test accuracy and the number of optimiser steps needed to reach a target
validation accuracy, each as mean and standard deviation over seeds.
Dropout: Srivastava et al. (2014); batch normalisation: Ioffe & Szegedy (2015).

  python -m experiments.regularisation --workdir /tmp/reg
"""
from __future__ import annotations

import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import launch
from jaxbdl.evaluation import metric_writers
from jaxbdl import data as data_lib
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks, objectives
from jaxbdl.training import train
from jaxbdl.bayes import likelihoods
from jaxbdl.evaluation import results as results_lib

VARIANTS = ("plain", "early_stopping", "dropout", "batch_norm")


def _validate(config):
  unknown = [v for v in config.variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
  networks.get_activation(config.activation)
  if config.num_seeds < 1 or config.num_epochs < 1 or config.patience < 1:
    raise ValueError("num_seeds, num_epochs and patience must be >= 1")
  if not 0 < config.target_accuracy <= 1:
    raise ValueError(f"target_accuracy must be in (0, 1], got {config.target_accuracy}")


def _splits(config):
  images, labels = data_lib.load_digits()
  x = images.reshape(images.shape[0], -1)
  x_rest, y_rest, x_te, y_te = data_lib.train_test_split_arrays(
      config.seed, x, labels, config.test_fraction)
  x_tr, y_tr, x_va, y_va = data_lib.train_test_split_arrays(
      config.seed + 1, x_rest, y_rest, config.valid_fraction)
  (x_tr, x_va, x_te), _, _ = data_lib.standardise(x_tr, x_va, x_te)
  as_j = lambda x, y: {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  return as_j(x_tr, y_tr), as_j(x_va, y_va), as_j(x_te, y_te)


def _model(config, variant):
  return networks.MLP(
      tuple(config.hidden) + (10,), activation=config.activation,
      dropout_rate=config.dropout_rate if variant == "dropout" else 0.0,
      batch_norm=variant == "batch_norm", kernel_init="he")


def run_variant(config, variant, train_data, valid_data, test_data):
  """Trains ``num_seeds`` runs of one variant as one program; returns arrays."""
  model = _model(config, variant)
  n = train_data["x"].shape[0]
  opt = optax.adam(config.learning_rate)
  loss_fn = objectives.scale_loss(objectives.make_map_loss_fn(
      objectives.flax_train_apply(model), likelihoods.categorical_log_prob,
      lambda p: jnp.zeros(()), n), 1.0 / n)

  def predict(params, model_state, x):
    return model.apply({"params": params, **model_state}, x, train=False)

  def eval_fn(params, model_state, valid):
    logits = predict(params, model_state, valid["x"])
    nll = -jnp.mean(likelihoods.categorical_log_prob(valid["y"], logits))
    return nll, {"accuracy": metrics.accuracy(valid["y"], logits)}

  fit = train.make_fit(
      loss_fn, opt, num_epochs=config.num_epochs, batch_size=config.batch_size,
      eval_fn=eval_fn,
      patience=config.patience if variant == "early_stopping" else None)

  def one_seed(key):
    variables = model.init(key, train_data["x"][:2])
    params = variables.pop("params")
    state = train.init_train_state(params, opt, dict(variables))
    state, hist = fit(state, train_data, key, valid_data)
    logits = predict(state.params, state.model_state, test_data["x"])
    return metrics.accuracy(test_data["y"], logits), hist

  keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  test_acc, hist = jax.jit(jax.vmap(one_seed))(keys)
  return np.asarray(test_acc), jax.tree_util.tree_map(np.asarray, hist)


def _steps_to_target(valid_acc, target, steps_per_epoch):
  """First epoch (1-based) x steps whose validation accuracy >= target; nan if never."""
  out = []
  for row in valid_acc:
    hit = np.nonzero(np.nan_to_num(row, nan=-1.0) >= target)[0]
    out.append((hit[0] + 1) * steps_per_epoch if hit.size else np.nan)
  return np.asarray(out, np.float64)


def run(config, workdir: str) -> dict:
  """Runs every variant; writes results.json, results.md, regularisation.png."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  train_data, valid_data, test_data = _splits(config)
  steps_per_epoch = train.num_batches(train_data["x"].shape[0], config.batch_size)
  rows, curves = [], {}
  for variant in config.variants:
    test_acc, hist = run_variant(config, variant, train_data, valid_data, test_data)
    steps = _steps_to_target(hist["valid_accuracy"], config.target_accuracy,
                             steps_per_epoch)
    reached = np.isfinite(steps)
    curves[variant] = hist
    row = {"variant": variant,
           "test acc": float(test_acc.mean()), "test acc sd": float(test_acc.std()),
           f"steps to {config.target_accuracy:g} valid acc": (
               float(np.nanmean(steps)) if reached.any() else float("nan")),
           "seeds reaching target": f"{int(reached.sum())}/{len(steps)}"}
    if variant == "early_stopping":
      stopped = hist["stopped_epoch"]
      # 1-based epochs, as in the plot (history holds 0-based indices).
      row["best epoch"] = float(np.mean(hist["best_epoch"])) + 1
      hit = stopped >= 0
      row["stopped epoch"] = (
          f"{np.mean(stopped[hit]) + 1:.1f} ({hit.sum()}/{hit.size} seeds)"
          if hit.any() else "not stopped")
    rows.append(row)
    logging.info("%s: test acc %.4f +- %.4f (%.1fs)", variant, test_acc.mean(),
                 test_acc.std(), time.time() - t0)
  columns = list(dict.fromkeys(k for r in rows for k in r))
  table = (f"Digits MLP {tuple(config.hidden)}, {config.num_seeds} seeds (mean, "
           f"sd); {steps_per_epoch} steps per epoch; epochs counted from "
           f"1.\n\n"
           + results_lib.markdown_table(rows, columns, 4))
  results = {"config": config.to_dict(), "rows": rows,
             "seconds": time.time() - t0,
             "curves": {v: {k: h[k] for k in ("loss", "valid_metric",
                                              "valid_accuracy")}
                        for v, h in curves.items()}}
  results_lib.write_outputs(workdir, results, table)
  for variant, h in curves.items():   # mean over seeds, per epoch
    with metric_writers.open_run(workdir, variant) as w:
      w.write_history({k: h[k] for k in ("loss", "valid_metric",
                                         "valid_accuracy")})
  _plot(curves, config, os.path.join(workdir, "regularisation.png"))
  return results


def _plot(curves, config, path):
  plt = results_lib.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  epochs = np.arange(1, config.num_epochs + 1)
  for i, (variant, h) in enumerate(curves.items()):
    col = f"C{i}"
    for ax, key in zip(axes, ("loss", "valid_metric", "valid_accuracy")):
      vals = np.asarray(h[key], np.float64)
      m, s = np.nanmean(vals, 0), np.nanstd(vals, 0)
      ax.plot(epochs, m, color=col, label=variant)
      ax.fill_between(epochs, m - s, m + s, color=col, alpha=0.2)
    if variant == "early_stopping":
      for ax in axes:
        ax.axvline(np.mean(h["best_epoch"]) + 1, color=col, ls=":",
                   label="best epoch (restored)")
  axes[0].set(title="training loss", yscale="log", xlabel="epoch",
              ylabel="per-datum NLL (nats, log scale)")
  axes[1].set(title="validation NLL", yscale="log", xlabel="epoch",
              ylabel="per-datum NLL (nats, log scale)")
  axes[2].set(title="validation accuracy", xlabel="epoch",
              ylabel="accuracy (fraction)")
  axes[2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("regularisation", run)
