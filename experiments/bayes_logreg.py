r"""Bayesian logistic regression with five gradient estimators (Sec. 8).

Mohamed, Rosca, Figurnov & Mnih (2020), Sec. 8: variational inference for
Bayesian logistic regression on the Wisconsin breast cancer data, comparing
gradient estimators of the ELBO data term along training.

Model: ``y_n ~ Bernoulli(sigmoid(x_n . w))`` with ``x_n`` the 30 features
(standardised with TRAINING statistics) plus a bias feature (``D = 31``),
prior ``w ~ N(0, prior_scale^2 I)``, mean-field ``q(w) = N(mu, diag(sigma^2))``.

  ELBO(mu, sigma) = E_q[ sum_n log p(y_n | x_n, w) ] - KL(q || p),

the KL term analytic (``distributions.Normal.kl``), the data term estimated by
the estimator under study (pathwise; score function; score function with the
delta-method control variate; measure-valued; measure-valued with the delta
method). The optimiser sees unconstrained ``{"loc", "raw_scale"}`` with
``sigma = softplus(raw_scale)`` (as in ``jaxbdl.bayes.elbo.to_normal``); the estimators
differentiate the Normal parameters ``{"loc", "scale"}`` and the chain rule is
applied by ``jax.grad`` of the estimator's surrogate loss.

Training uses the shared loop (``jaxbdl.training.train``): full batch Adam, the same
number of steps and samples per estimate for every estimator, ``num_seeds``
runs vmapped. Every ``eval_every`` steps (the fit runs in chunks inside a
``lax.scan``): the ELBO with ``elbo_samples`` samples, the test accuracy of
the posterior predictive ``mean_m sigmoid(x . w_m) > 0.5``, and the total
variance of the data-term gradient estimate (with respect to ``loc`` and
``scale``): the sum over the 62 coordinates of the variance across
``variance_replicas`` keys at the current parameters.

Two protocols (configs): the default/``quick`` one above (full batch Adam,
softplus scales, coefficient 1, total variance), and ``:paper``, the
authors' protocol (deepmind mc_gradients ``config.py``/``main.py``):
minibatches of 32, 50 posterior samples per step, SGD with learning rate
``1e-3 * cos(pi/2 * step / T)``, ``q`` parameterised by ``(loc,
log_scale)`` (init 0, 0; prior N(0, 1)), the control-variate coefficient
``beta = Cov(g, c) / Var(c)`` per coordinate estimated from 25 FRESH samples
(``fitted_coefficient``), and every ``eval_every`` steps the variance PER
DIMENSION of the single-sample data-term gradient over ``variance_samples``
= 1000 samples on the full training set, for ``loc`` and ``log_scale``
separately (in the optimiser's parameterisation). ``T`` is rounded to whole
epochs (5040 steps, 14 batches of 32 per epoch of 455 training points) and
the paper trains and evaluates on all 569 points where we hold out 20%.

The ELBO is computed in ONE place, :func:`elbo`, so it can be swapped for a
library ELBO.

Run:
  python -m experiments.bayes_logreg --workdir /tmp/blr \
      [--config experiments/configs/bayes_logreg.py[:quick|:paper]]

Outputs: ``results.json``, ``results.md`` (summary table), ``training.png``
(gradient variance vs step, log y; ELBO vs step; test accuracy vs step).
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import launch
from jaxbdl.gradients import control_variates
from jaxbdl import data as data_lib
from jaxbdl.gradients import distributions
from jaxbdl.gradients import estimators
from jaxbdl.bayes import elbo as elbo_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train


Normal = distributions.Normal

def _make_estimator(name, samples, surrogate):
  """An ``Estimator`` by keyword; fills ``reparameterized`` if it exists."""
  kw = {"name": name, "samples": samples, "surrogate": surrogate}
  if "reparameterized" in estimators.Estimator._fields:
    kw["reparameterized"] = False
  return estimators.Estimator(**kw)


def fitted_coefficient(estimator: estimators.Estimator,
                       cv: control_variates.ControlVariate,
                       num_fresh: int) -> estimators.Estimator:
  """``g - beta * c`` with ``beta`` fitted on ``num_fresh`` FRESH samples.

  Per coordinate ``beta = Cov(g, c) / Var(c)`` from an independent key
  (so ``beta`` is independent of the samples it multiplies and the estimate
  stays unbiased), as in the mc_gradients code
  (``num_posterior_samples_cv_coeff = 25``). ``g`` and ``g - c`` come from
  :func:`control_variates.with_control_variate` with coefficients 0 and 1.
  """
  plain = control_variates.with_control_variate(estimator, cv, 0.0)
  full = control_variates.with_control_variate(estimator, cv, 1.0)

  def samples(f, dist):
    plain_fn, full_fn = plain.samples(f, dist), full.samples(f, dist)

    def fn(params, key, num_samples):
      k_main, k_fresh = jax.random.split(key)
      g_fresh = plain_fn(params, k_fresh, num_fresh)
      c_fresh = jax.tree.map(jnp.subtract, g_fresh,
                             full_fn(params, k_fresh, num_fresh))
      beta = jax.tree.map(control_variates.same_sample_coefficient, g_fresh,
                          c_fresh)
      beta = jax.tree.map(lambda b: jax.lax.stop_gradient(b[:1]), beta)
      g = plain_fn(params, k_main, num_samples)
      c = jax.tree.map(jnp.subtract, g, full_fn(params, k_main, num_samples))
      return jax.tree.map(lambda gg, cc, b: gg - b * cc, g, c, beta)

    return fn

  return _make_estimator(f"{estimator.name}+{cv.name}(fitted)", samples,
                         estimators.linearized_surrogate(samples))


def _delta(estimator, config):
  cv = control_variates.delta_method()
  if config.get("cv_coefficient_samples", 0):
    return fitted_coefficient(estimator, cv, int(config.cv_coefficient_samples))
  return control_variates.with_control_variate(estimator, cv)


ESTIMATORS: dict[str, Callable[[Any], estimators.Estimator]] = {
    "pathwise": lambda config: estimators.pathwise,
    "score_function": lambda config: estimators.score_function,
    "score_function_delta": lambda config: _delta(estimators.score_function,
                                                  config),
    "measure_valued": lambda config: estimators.measure_valued,
    "measure_valued_delta": lambda config: _delta(estimators.measure_valued,
                                                  config),
}

# q's parameterisations: (unconstrained raw params -> Normal params,
# initial raw scale from a standard deviation, d scale / d raw scale).
PARAMETERISATIONS = {
    "softplus": ("raw_scale", jax.nn.softplus,
                 lambda x: x + jnp.log(-jnp.expm1(-x)),
                 jax.nn.sigmoid),
    "log": ("log_scale", jnp.exp, jnp.log, jnp.exp),
}


def to_normal(raw, parameterisation: str):
  """``{"loc", "raw_scale" | "log_scale"}`` -> ``{"loc", "scale"}``."""
  name, fwd, _, _ = PARAMETERISATIONS[parameterisation]
  return {"loc": raw["loc"], "scale": fwd(raw[name])}


def elbo(estimator: estimators.Estimator, log_lik: Callable, params, prior,
         key, num_samples: int) -> jax.Array:
  """The ELBO surrogate ``E_q[log_lik(w)] - KL(q || prior)``.

  The data term is ``estimator``'s surrogate (value = MC estimate, gradient
  = the estimator's); the KL is analytic (``jaxbdl.bayes.elbo.normal_elbo``,
  the core's ELBO for a Normal over a flat vector).
  """
  return elbo_lib.normal_elbo(estimator, log_lik, params, prior, key,
                              num_samples)


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam (default) or the paper's SGD with ``lr cos(pi/2 t / T)``."""
  if config.get("optimizer", "adam") == "adam":
    return optax.adam(config.learning_rate)
  total = float(config.num_steps)
  schedule = lambda t: config.learning_rate * jnp.cos(
      0.5 * jnp.pi * jnp.minimum(t, total) / total)
  return optax.sgd(schedule)


def load_data(split_seed: int, test_fraction: float) -> dict[str, np.ndarray]:
  """Breast cancer, fixed split, train-statistics standardisation, bias column.

  Returns:
    ``{"x_train": [N, 31], "y_train": [N], "x_test": [M, 31], "y_test": [M]}``
    (float32 features, int32 labels in {0, 1}).
  """
  x, y = data_lib.load_breast_cancer(add_bias=False, standardised=False)
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      int(split_seed), x, y, test_fraction)
  (x_tr, x_te), _, _ = data_lib.standardise(x_tr, x_te)
  bias = lambda a: np.concatenate([a, np.ones((a.shape[0], 1), a.dtype)], 1)
  return {"x_train": bias(x_tr), "y_train": y_tr.astype(np.int32),
          "x_test": bias(x_te), "y_test": y_te.astype(np.int32)}


def log_likelihood(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
  """``sum_n log p(y_n | x_n, w)``; ``w [D]``, ``x [N, D]``, ``y [N]``."""
  return jnp.sum(likelihoods.bernoulli_log_prob(y, x @ w))


def _validate(config) -> None:
  unknown = [e for e in config.estimators if e not in ESTIMATORS]
  if unknown or not config.estimators:
    raise ValueError(f"unknown estimator(s) {unknown}; choose from "
                     f"{list(ESTIMATORS)}")
  for name in ("num_seeds", "num_samples", "num_steps", "eval_every",
               "elbo_samples", "variance_replicas"):
    if int(config[name]) < 1:
      raise ValueError(f"config.{name} must be >= 1, got {config[name]}")
  if config.variance_replicas < 2:
    raise ValueError("config.variance_replicas must be >= 2 for a variance")
  if config.num_steps % config.eval_every:
    raise ValueError(f"num_steps ({config.num_steps}) must be a multiple of "
                     f"eval_every ({config.eval_every})")
  for name in ("learning_rate", "prior_scale", "init_scale"):
    if not (math.isfinite(config[name]) and config[name] > 0):
      raise ValueError(f"config.{name} must be finite and > 0, got "
                       f"{config[name]}")
  if config.batch_size < 0:
    raise ValueError(f"config.batch_size must be >= 0, got "
                     f"{config.batch_size}")
  if config.get("optimizer", "adam") not in ("adam", "sgd_cosine"):
    raise ValueError(f"config.optimizer must be 'adam' or 'sgd_cosine', got "
                     f"{config.optimizer!r}")
  if config.get("parameterisation", "softplus") not in PARAMETERISATIONS:
    raise ValueError(f"config.parameterisation must be one of "
                     f"{list(PARAMETERISATIONS)}, got "
                     f"{config.parameterisation!r}")
  if config.get("variance_samples", 0) == 1:
    raise ValueError("config.variance_samples must be 0 (off) or >= 2")


def make_run(estimator: estimators.Estimator, data: dict[str, jax.Array],
             config) -> Callable[[jax.Array], dict[str, jax.Array]]:
  """Builds ``run(key) -> trace`` for one estimator (pure; jit and vmap it).

  ``trace`` holds ``[E + 1]`` arrays (``E = num_steps / eval_every``
  evaluations plus the initial point): ``step``, ``elbo``, ``test_accuracy``,
  ``grad_variance`` (total over the 62 loc/scale coordinates), and
  ``[num_steps]`` ``train_loss`` (the per-step negative ELBO estimate / N).
  """
  x_tr, y_tr = data["x_train"], data["y_train"]
  x_te, y_te = data["x_test"], data["y_test"]
  n_train, dim = x_tr.shape
  batch_size = int(config.batch_size) or n_train
  steps_per_epoch = train.num_batches(n_train, batch_size)
  if config.eval_every % steps_per_epoch:
    raise ValueError(f"config.eval_every ({config.eval_every}) must be a "
                     f"multiple of the {steps_per_epoch} steps per epoch "
                     f"(batch {batch_size} of {n_train})")
  num_samples = int(config.num_samples)
  param = config.get("parameterisation", "softplus")
  scale_name, _, scale_inverse, dscale_draw = PARAMETERISATIONS[param]
  variance_samples = int(config.get("variance_samples", 0))
  prior = {"loc": jnp.zeros(dim), "scale": jnp.full(dim, config.prior_scale)}
  optimizer = make_optimizer(config)

  def loss_fn(raw, model_state, batch, key):
    x, y = batch["x"], batch["y"]
    scale = n_train / x.shape[0]
    f = lambda w: scale * log_likelihood(w, x, y)
    value = elbo(estimator, f, to_normal(raw, param), prior, key,
                 num_samples)
    return -value / n_train, (model_state, {})

  fitter = train.make_fitter(loss_fn, optimizer, batch_size=batch_size)
  f_full = lambda w: log_likelihood(w, x_tr, y_tr)
  grad_fn = estimator(f_full, Normal)
  samples_fn = estimator.samples(f_full, Normal)

  def measure(raw, key):
    params = to_normal(raw, param)
    k_elbo, k_var, k_dim = jax.random.split(key, 3)
    value = elbo(estimators.pathwise, f_full, params, prior, k_elbo,
                 config.elbo_samples)
    w = Normal.sample(params, k_elbo, (config.elbo_samples,))  # [M, D]
    probs = jnp.mean(jax.nn.sigmoid(x_te @ w.T), axis=1)       # [T]
    acc = jnp.mean((probs > 0.5).astype(jnp.int32) == y_te)
    keys = jax.random.split(k_var, config.variance_replicas)
    grads = jax.vmap(grad_fn, in_axes=(None, 0, None))(params, keys,
                                                       num_samples)
    total_var = sum(jnp.sum(jnp.var(g, axis=0, ddof=1))
                    for g in jax.tree.leaves(grads))
    out = {"elbo": value, "test_accuracy": acc, "grad_variance": total_var}
    if variance_samples:
      # Per dimension, single-sample estimates, optimiser parameterisation.
      g = samples_fn(params, k_dim, variance_samples)
      g_raw = g["scale"] * dscale_draw(raw[scale_name])[None]
      out["var_loc"] = jnp.var(g["loc"], axis=0, ddof=1)
      out[f"var_{scale_name}"] = jnp.var(g_raw, axis=0, ddof=1)
    return out

  num_chunks = config.num_steps // config.eval_every
  train_data = {"x": x_tr, "y": y_tr}

  def run(key):
    fit_key, eval_key = jax.random.split(key)
    raw = {"loc": jnp.zeros(dim),
           scale_name: jnp.full(dim, scale_inverse(
               jnp.asarray(config.init_scale, jnp.float32)))}
    fs = fitter.init(train.init_train_state(raw, optimizer))

    def fit_chunk(fs):
      fs, hist = fitter.run_epochs(
          fs, train_data, fit_key,
          num_epochs=config.eval_every // steps_per_epoch)
      return fs, hist["loss"]

    def skip(fs):
      return fs, jnp.full((config.eval_every // steps_per_epoch,), jnp.nan,
                          jnp.float32)

    def chunk(fs, i):
      # Measure, then train the next chunk; the last of the num_chunks + 1
      # iterations only measures (one copy of each in the compiled program).
      m = measure(fitter.result(fs).params, jax.random.fold_in(eval_key, i))
      fs, losses = jax.lax.cond(i < num_chunks, fit_chunk, skip, fs)
      return fs, (m, losses)

    fs, (trace, losses) = jax.lax.scan(chunk, fs, jnp.arange(num_chunks + 1))
    trace = dict(trace)
    trace["train_loss"] = losses[:num_chunks].reshape(-1)  # per epoch
    trace["step"] = jnp.arange(num_chunks + 1) * config.eval_every
    trace["final_loc"] = fitter.result(fs).params["loc"]
    return trace

  return run


def run(config, workdir: str) -> dict[str, Any]:
  """Trains with every estimator; writes results.json, results.md, plots."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  data_np = load_data(config.split_seed, config.test_fraction)
  for name, arr in data_np.items():
    data_lib.check_finite(name, arr)
  data = jax.tree.map(jnp.asarray, data_np)
  keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  traces, rows = {}, []
  for name in config.estimators:
    t0 = time.time()
    run_fn = jax.jit(jax.vmap(make_run(ESTIMATORS[name](config), data, config)),
                     compiler_options=launch.compiler_options(config))
    tr = jax.tree.map(np.asarray, jax.block_until_ready(run_fn(keys)))
    seconds = time.time() - t0
    logging.info("%s: %.1fs", name, seconds)
    if not np.all(np.isfinite(tr["elbo"])):
      logging.warning("%s: non-finite ELBO during training", name)
    traces[name] = tr
    final_elbo = tr["elbo"][:, -1]
    rows.append({
        "estimator": name,
        "initial_elbo": float(np.mean(tr["elbo"][:, 0])),
        "final_elbo": float(np.mean(final_elbo)),
        "final_elbo_std": float(np.std(final_elbo)),
        "test_accuracy": float(np.mean(tr["test_accuracy"][:, -1])),
        "mean_log10_grad_var": float(np.mean(np.log10(tr["grad_variance"]))),
        "seconds": seconds})
    for key in [k for k in tr if k.startswith("var_")]:
      # Mean over checkpoints, seeds and dimensions of log10 variance.
      rows[-1][f"mean_log10_{key}"] = float(np.mean(np.log10(tr[key])))
  load = open("/proc/loadavg").read().split()[:3] if os.path.exists(
      "/proc/loadavg") else []
  res = {
      "config": config.to_dict(),
      "loadavg": load,
      "num_train": int(data_np["x_train"].shape[0]),
      "num_test": int(data_np["x_test"].shape[0]),
      "dim": int(data_np["x_train"].shape[1]),
      "summary": rows,
      "traces": {k: {kk: vv for kk, vv in v.items()} for k, v in
                 traces.items()},
  }
  per_dim = [k for k in rows[0] if k.startswith("mean_log10_var_")]
  table = results_lib.markdown_table(
      rows, ["estimator", "initial_elbo", "final_elbo", "final_elbo_std",
             "test_accuracy", "mean_log10_grad_var", *per_dim, "seconds"],
      precision=3)
  batch = config.batch_size or "full"
  opt = config.get("optimizer", "adam")
  header = (f"# Bayesian logistic regression, breast cancer (Mohamed et al. "
            f"2020, Sec. 8)\n\n{res['num_train']} train / {res['num_test']} "
            f"test examples, D = {res['dim']}; {config.num_steps} steps of "
            f"{opt} (lr {config.learning_rate}, batch {batch}), "
            f"{config.num_samples} samples per estimate, q scale "
            f"parameterisation {config.get('parameterisation', 'softplus')},"
            f" CV coefficient "
            f"{config.get('cv_coefficient_samples', 0) or 1} "
            f"({'fitted on that many fresh samples' if config.get('cv_coefficient_samples', 0) else 'fixed'}),"
            f" mean over {config.num_seeds} seeds. "
            f"mean_log10_grad_var: total variance over loc and scale of the "
            f"data-term estimate, {config.variance_replicas} keys, every "
            f"{config.eval_every} steps.")
  if per_dim:
    header += (f" mean_log10_var_*: variance per dimension of single-sample "
               f"estimates ({config.variance_samples} samples, full training"
               f" set) in the optimiser's parameterisation, log10, averaged "
               f"over dimensions, checkpoints and seeds.")
  header += f" Load average {' '.join(load)} (2 shared cores).\n\n"
  results_lib.write_outputs(workdir, res, header + table)
  _plot(traces, config, workdir)
  res["table"] = header + table
  return res


def _plot(traces, config, workdir) -> None:
  plt = results_lib.pyplot()
  first = next(iter(traces.values()))
  per_dim = [k for k in first if k.startswith("var_")]
  panels = [("grad_variance", True, "log10 total gradient variance")]
  panels += [(k, True, f"log10 variance per dim., d/d {k[4:]}\n"
              "(mean over dims of log10; single sample)") for k in per_dim]
  panels += [("elbo", False, "ELBO (nats)"),
             ("test_accuracy", False, "test accuracy")]
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
  for name, tr in traces.items():
    step = tr["step"][0]
    for ax, (key, log, _) in zip(axes, panels):
      vals = np.log10(tr[key]) if log else tr[key]
      if vals.ndim == 3:               # [seeds, checkpoints, D]
        vals = vals.mean(-1)
      mean = vals.mean(0)
      line, = ax.plot(step, mean, label=name)
      ax.fill_between(step, vals.min(0), vals.max(0), alpha=0.2,
                      color=line.get_color())
  for ax, (key, _, label) in zip(axes, panels):
    ax.set_ylabel(label)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  elbo_ax = axes[[p[0] for p in panels].index("elbo")]
  lo = min(np.percentile(tr["elbo"], 5) for tr in traces.values())
  hi = max(np.max(tr["elbo"]) for tr in traces.values())
  elbo_ax.set_ylim(lo, hi + 0.05 * (hi - lo) + 1e-6)
  axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
  fig.suptitle(f"Bayesian logistic regression (breast cancer): "
               f"{config.num_samples} samples per estimate, "
               f"{config.num_seeds} seeds (band: min-max)")
  fig.tight_layout()
  results_lib.save_figure(fig, os.path.join(workdir, "training.png"))


if __name__ == "__main__":
  launch.main("bayes_logreg", run, report=lambda res, workdir: res["table"])
