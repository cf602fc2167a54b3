r"""In-between uncertainty on 1-D data with a gap: MAP, MFVI, MC dropout, ensemble.

Trains each method of the UCI benchmark registry (``jaxbdl.uci_benchmark``,
same networks and hyper-parameters) on ``y = sin(2 pi x) + 0.1 eps`` with
inputs in ``[-1, -0.3] U [0.3, 1]`` and plots the predictive mean and
+-2 standard deviations on a grid over ``[-1.5, 1.5]``. A Bayesian predictive
should widen inside the gap and outside the data (Foong et al. 2019); the
table reports the mean predictive standard deviation near the data, inside
the gap and outside the domain, and their ratio.

  python -m experiments.gap_uncertainty --workdir /tmp/gap
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
from jaxbdl import metrics, uci_benchmark
from jaxbdl import results as results_lib

def run(config, workdir: str) -> dict:
  """Fits every method; writes results.json, results.md and gap_uncertainty.png."""
  uci_benchmark.check_method_names(list(config.methods))
  if config.num_points < 4 or not config.noise_std > 0:
    raise ValueError("need num_points >= 4 and noise_std > 0")
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  key = jax.random.key(config.seed)
  gap = data_lib.gap_regression(key, n=config.num_points, noise_std=config.noise_std)
  y_mean, y_std = float(jnp.mean(gap.y)), float(jnp.std(gap.y))
  data = {"x": gap.x, "y": (gap.y - y_mean) / y_std}
  xg = np.asarray(gap.x_grid[:, 0])
  regions = {"data": ((xg > -1) & (xg < -0.3)) | ((xg > 0.3) & (xg < 1)),
             "gap": (xg > -0.2) & (xg < 0.2),
             "outside": np.abs(xg) > 1.2}
  rows, preds = [], {}
  for name in config.methods:
    k_perm, k_train, k_pred = jax.random.split(
        jax.random.fold_in(key, len(preds) + 1), 3)
    # Methods with early stopping hold out part of the data, as on UCI.
    n_val = int(round(config.num_points * config.model[name].valid_fraction))
    perm = jax.random.permutation(k_perm, config.num_points)
    fit_data = {k: v[perm[n_val:]] for k, v in data.items()}
    valid = {k: v[perm[:n_val]] for k, v in data.items()} if n_val else None
    method = uci_benchmark.build_method(name, config.model,
                                        config.num_points - n_val, 1)
    params, hist = jax.jit(method.train)(fit_data, k_train, valid)
    means, variances = jax.jit(method.predict)(params, gap.x_grid, k_pred)
    mean, var = metrics.mixture_mean_variance(means, variances)
    mean = np.asarray(mean) * y_std + y_mean
    sd = np.sqrt(np.asarray(var)) * y_std
    preds[name] = (mean, sd)
    row = {"method": name}
    for region, mask in regions.items():
      row[f"sd {region}"] = float(sd[mask].mean())
    row["gap / data sd"] = row["sd gap"] / row["sd data"]
    row["rmse vs f (data region)"] = float(np.sqrt(np.mean(
        (mean[regions["data"]] - np.asarray(gap.f_grid)[regions["data"]]) ** 2)))
    loss = np.asarray(hist["loss"])
    loss = loss.reshape(-1, loss.shape[-1])
    # Epochs after an early stop are NaN: compare with the last trained one.
    last = np.array([r[np.isfinite(r)][-1] for r in loss])
    row["loss fell"] = bool(np.all(last < loss[:, 0]))
    rows.append(row)
    logging.info("%s: %s", name, row)
  table = (f"Predictive standard deviation by region (noise sd "
           f"{config.noise_std}); gap = |x| < 0.2, outside = |x| > 1.2.\n\n"
           + results_lib.markdown_table(rows, precision=3))
  results = {"config": config.to_dict(), "rows": rows, "seconds": time.time() - t0}
  results_lib.write_outputs(workdir, results, table)
  _plot(gap, preds, os.path.join(workdir, "gap_uncertainty.png"))
  return results


def _plot(gap, preds, path):
  plt = results_lib.pyplot()
  fig, axes = plt.subplots(1, len(preds), figsize=(4.2 * len(preds), 3.6),
                           squeeze=False, sharey=True)
  xg = np.asarray(gap.x_grid[:, 0])
  for ax, (name, (mean, sd)) in zip(axes[0], preds.items()):
    ax.fill_between(xg, mean - 2 * sd, mean + 2 * sd, alpha=0.3, label="+-2 sd")
    ax.plot(xg, mean, label="predictive mean")
    ax.plot(xg, np.asarray(gap.f_grid), "k:", label="sin(2 pi x)")
    ax.plot(np.asarray(gap.x[:, 0]), np.asarray(gap.y), "k.", ms=3)
    ax.axvspan(-0.3, 0.3, color="grey", alpha=0.1)
    ax.set(title=name, xlabel="x", ylim=(-3, 3))
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("gap_uncertainty", run)
