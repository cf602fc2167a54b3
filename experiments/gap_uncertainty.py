r"""In-between uncertainty on 1-D data with a gap: MAP, MFVI, MC dropout, ensemble.

Fits four methods to ``y = sin(2 pi x) + 0.1 eps`` with 100 inputs in
``[-1, -0.3] U [0.3, 1]`` (``jaxbdl.data.gap_regression``) and plots the
predictive mean and +-2 standard deviations on a grid over ``[-1.5, 1.5]``.
A Bayesian predictive should widen inside the gap and outside the data; Foong
et al. (2019) show that mean-field VI (and MC dropout) often do not widen
in-between. The table reports the fit (RMSE of the predictive mean against
the noise-free function on the data region, to compare with the noise sd),
the mean predictive sd on the data region, inside the gap and outside the
domain, the gap / data ratio (mean and standard error over training seeds),
and the epistemic part ``sqrt(predictive var - noise var)``.

All methods share one network (``config.model``): an MLP with two hidden
ReLU layers and RANDOM biases. (With one hidden layer and zero biases, as in
the UCI network, every ReLU kink starts at ``x = 0``, inside the gap;
the loss then depends only on one straight line per data cluster, whose best
fit, RMSE 0.43 against ``f``, is a stationary point that no learning rate or
step count leaves.) The likelihood is Gaussian with the noise sd FIXED at its
true value by default (``model.noise_scale``; 0 learns it as a point
estimate, with which MFVI explains the data as noise: see
``docs/results_gpu/gap_uncertainty.md``). Targets are standardised; training
is full-batch Adam; every method comes from the core's registry
(``jaxbdl.bayes.registry``); each method runs
``num_seeds`` training seeds on the same data as one vmapped program, and the
plot shows seed 0.

* ``map``: a Gaussian prior ``N(0, prior_scale^2)`` = weight decay.
* ``mc_dropout``: the same loss with dropout after every hidden layer, kept on
  at test time (``jaxbdl.bayes.mc_dropout``; Gal & Ghahramani 2016).
* ``mfvi``: mean-field Gaussian VI over all weights, prior ``N(0, 1)``
  (``jaxbdl.bayes.mfvi``: pathwise gradients, closed-form KL; Blundell et al.
  2015).
* ``ensemble``: ``num_members`` MAP networks from independent random
  initialisations, equal-weight Gaussian mixture (``jaxbdl.bayes.ensembles``;
  Lakshminarayanan et al. 2017). Weak weight decay (``prior_scale`` 10): with
  ``N(0, 1)`` the members converge to nearly the same minimum-norm function
  and the ensemble does not widen in the gap.

  python -m experiments.gap_uncertainty --workdir /tmp/gap

References:
  A. Y. K. Foong, Y. Li, J. M. Hernandez-Lobato, R. E. Turner (2019),
    'In-between' uncertainty in Bayesian neural networks, ICML UDL workshop.
  B. Lakshminarayanan, A. Pritzel, C. Blundell (2017), Simple and scalable
    predictive uncertainty estimation using deep ensembles, NeurIPS.
"""
from __future__ import annotations

import os
import time
import zlib

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import launch
from jaxbdl.evaluation import metric_writers
from jaxbdl import data as data_lib
from jaxbdl.nn import networks
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry



def build_method(name: str, config, noise_scale):
  """``(Posterior, hp)`` of the registered method ``name`` on the shared
  network (``config.model``), full-batch training for ``model.num_steps``.

  ``noise_scale``: a fixed observation-noise sd (standardised units), or
  ``None`` to learn it as a point estimate.
  """
  m = config.model
  if noise_scale is None:
    lik = lambda hp: likelihoods.gaussian(
        None, init_scale=float(m.noise_init_scale),
        min_scale=float(m.noise_min_scale))
  else:
    lik = lambda hp: likelihoods.gaussian(hp["noise_scale"])
  model = posterior.mlp_model(tuple(m.hidden), 1, lik,
                              lambda hp: priors.gaussian(hp["prior_scale"]),
                              activation=m.activation,
                              bias_init_std=float(m.bias_init_std))
  c = registry.default_config()
  c.num_epochs = int(m.num_steps)   # full batch: one step per epoch
  c.batch_size = int(config.num_points)
  c.num_predict_samples = int(m.num_predict_samples)
  c.learning_rate = float(m.learning_rate)
  c.map.valid_fraction = 0.0
  for field, value in config[name].items():
    c[name][field] = value
  hp = registry.default_hparams(name, c)
  hp["noise_scale"] = 1.0 if noise_scale is None else float(noise_scale)
  return registry.build(name, model, c), hp


def _validate(config) -> None:
  registry.check_names(list(config.methods))
  if config.num_points < 4 or not config.noise_std > 0:
    raise ValueError("need num_points >= 4 and noise_std > 0")
  if not config.gap[1] - config.gap[0] > 0.2:
    raise ValueError(f"config.gap must be wider than 0.2 (the table's gap "
                     f"region drops 0.1 at each end), got {tuple(config.gap)}")
  if config.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be >= 1, got {config.num_seeds}")
  m = config.model
  if m.noise_scale < 0:
    raise ValueError(f"config.model.noise_scale must be >= 0 (0: learned), "
                     f"got {m.noise_scale}")
  if not m.hidden or any(int(h) < 1 for h in m.hidden):
    raise ValueError(f"config.model.hidden must be positive widths, got "
                     f"{tuple(m.hidden)}")
  networks.get_activation(m.activation)  # Raises on unknown names.


def _regions(config, xg: np.ndarray) -> dict[str, np.ndarray]:
  """Grid masks: data clusters, gap interior (0.1 margins), beyond the domain
  by more than 0.2."""
  (lo, hi), (g_lo, g_hi) = config.domain, config.gap
  return {"data": ((xg > lo) & (xg < g_lo)) | ((xg > g_hi) & (xg < hi)),
          "gap": (xg > g_lo + 0.1) & (xg < g_hi - 0.1),
          "outside": (xg < lo - 0.2) | (xg > hi + 0.2)}


def _loss_fell(loss: np.ndarray) -> tuple[float, float, bool]:
  """First and last tenth-of-training mean loss (per member), and whether the
  last is below the first for every member."""
  loss = loss.reshape(-1, loss.shape[-1])
  k = max(1, loss.shape[1] // 10)
  first, last = loss[:, :k].mean(1), loss[:, -k:].mean(1)
  return float(first.mean()), float(last.mean()), bool(np.all(last < first))


def run(config, workdir: str) -> dict:
  """Fits every method; writes results.json, results.md, gap_uncertainty.png."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  key = jax.random.key(config.seed)
  gap = data_lib.gap_regression(key, n=config.num_points,
                                noise_std=config.noise_std,
                                gap=tuple(config.gap),
                                domain=tuple(config.domain))
  y_mean, y_std = float(jnp.mean(gap.y)), float(jnp.std(gap.y))
  data = {"x": gap.x, "y": (gap.y - y_mean) / y_std}
  xg = np.asarray(gap.x_grid[:, 0])
  f_grid = np.asarray(gap.f_grid)
  regions = _regions(config, xg)
  noise_scale = (config.model.noise_scale / y_std if config.model.noise_scale
                 else None)
  rows, preds = [], {}
  seeds = jnp.arange(int(config.num_seeds))
  for name in config.methods:
    t1 = time.time()
    method, hp = build_method(name, config, noise_scale)
    # Keys by method name, so a method's numbers do not depend on which
    # other methods run; seed s of it uses fold_in(method key, s).
    method_key = jax.random.fold_in(key, zlib.crc32(name.encode()))

    @jax.jit
    @jax.vmap
    def fit_predict(seed, method=method, hp=hp):
      k_train, k_pred = jax.random.split(jax.random.fold_in(method_key, seed))
      state, hist = method.fit(k_train, data, hp)
      pred = method.predict(state, gap.x_grid, k_pred, hp)
      summary = likelihoods.mixture_summary(pred)
      # Aleatoric part: the mixture's mean component variance.
      noise_sd = jnp.sqrt(jnp.mean(pred["variance"]))
      return summary["mean"], summary["variance"], noise_sd, hist["loss"]

    # [K, G], [K, G], [K], [K, (M,) E] for K seeds.
    mean, var, noise_sd, loss = jax.tree_util.tree_map(np.asarray,
                                                       fit_predict(seeds))
    mean = mean * y_std + y_mean
    sd = np.sqrt(var) * y_std
    noise_sd = noise_sd * y_std
    # Epistemic part: the predictive variance minus the noise variance.
    epi = np.sqrt(np.maximum(sd ** 2 - noise_sd[:, None] ** 2, 0.0))
    preds[name] = (mean[0], sd[0])
    region_sd = {r: sd[:, mask].mean(1) for r, mask in regions.items()}
    ratio = region_sd["gap"] / region_sd["data"]  # [K]
    first, last, fell = _loss_fell(loss)
    row = {"method": name,
           "rmse vs f (data)": float(np.mean(np.sqrt(np.mean(
               (mean - f_grid)[:, regions["data"]] ** 2, axis=1)))),
           "noise sd": float(noise_sd.mean())}
    for region, v in region_sd.items():
      row[f"sd {region}"] = float(v.mean())
    row["gap / data sd"] = float(ratio.mean())
    row["gap / data sd se"] = float(ratio.std() / np.sqrt(len(ratio)))
    row["epistemic sd data"] = float(epi[:, regions["data"]].mean())
    row["epistemic sd gap"] = float(epi[:, regions["gap"]].mean())
    row["loss first"], row["loss last"], row["loss fell"] = first, last, fell
    row["finite"] = bool(np.all(np.isfinite(mean)) and np.all(np.isfinite(sd))
                         and np.all(np.isfinite(loss)))
    row["seconds"] = time.time() - t1
    rows.append(row)
    with metric_writers.open_run(workdir, name) as w:
      w.write_history({"loss": loss}, prefix="train/")  # mean over seeds
      w.write_scalars(0, {k: v for k, v in row.items()
                          if isinstance(v, float)})
    logging.info("%s: %s", name, row)
  (lo, hi), (g_lo, g_hi) = config.domain, config.gap
  columns = ["method", "rmse vs f (data)", "noise sd", "sd data", "sd gap",
             "sd outside", "gap / data sd", "gap / data sd se",
             "epistemic sd data", "epistemic sd gap", "loss fell", "seconds"]
  noise = (f"fixed at {config.model.noise_scale:g}" if config.model.noise_scale
           else "learned")
  table = (f"Predictive standard deviation by region, mean over "
           f"{config.num_seeds} training seed(s) (se: over seeds); "
           f"{config.num_points} points, true noise sd {config.noise_std:g}, "
           f"model noise sd {noise}; data = the two clusters, gap = "
           f"{g_lo + 0.1:g} < x < {g_hi - 0.1:g}, outside = x < {lo - 0.2:g} "
           f"or x > {hi + 0.2:g}; epistemic sd = sqrt(predictive var - noise "
           f"var); rmse of the predictive mean against the noise-free "
           f"function.\n\n"
           + results_lib.markdown_table(rows, columns, precision=3))
  results = {"config": config.to_dict(), "rows": rows,
             "seconds": time.time() - t0}
  results_lib.write_outputs(workdir, results, table)
  _plot(config, gap, preds, os.path.join(workdir, "gap_uncertainty.png"))
  return results


def _plot(config, gap, preds, path):
  plt = results_lib.pyplot()
  fig, axes = plt.subplots(1, len(preds), figsize=(4.2 * len(preds), 3.6),
                           squeeze=False, sharey=True)
  xg = np.asarray(gap.x_grid[:, 0])
  for ax, (name, (mean, sd)) in zip(axes[0], preds.items()):
    ax.axvspan(*config.gap, color="grey", alpha=0.15, label="gap (no data)")
    ax.fill_between(xg, mean - 2 * sd, mean + 2 * sd, alpha=0.3,
                    label="predictive mean ± 2 sd")
    ax.plot(xg, mean, label="predictive mean")
    ax.plot(xg, np.asarray(gap.f_grid), "k:", label="sin(2 pi x) (truth)")
    ax.plot(np.asarray(gap.x[:, 0]), np.asarray(gap.y), "k.", ms=3,
            label="training data")
    ax.set(title=name, xlabel="x (input, dimensionless)", ylim=(-3, 3))
  axes[0, 0].set_ylabel("y (target units)")
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95),
             fontsize=8)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("gap_uncertainty", run)
