r"""Curve fitting: capacity, overfitting, and priors as regularisers (MAP).

Bishop (2006, PRML section 1.1): N = 10 noisy samples of sin(2 pi x). Fits

* polynomials of degree 0..9 by maximum likelihood (exact minimum-norm least
  squares in float64: no ridge, so degree 9 interpolates the 10 points), by
  MAP with a Gaussian prior (ridge, L2) and by MAP with a Laplace prior
  (lasso, L1), all degrees in one vmapped program per precision;
* one-hidden-layer tanh MLPs of increasing width by MAP with no prior, a
  Gaussian prior and a Laplace prior, seeds and priors vmapped per width;

and reports train and test RMSE against capacity.

  python -m experiments.curve_fitting --workdir /tmp/cf
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
from experiments import validate
from jaxbdl.nn import linear_models, networks, objectives
from jaxbdl.training import train
from jaxbdl.bayes import likelihoods, priors
from jaxbdl.evaluation import results as results_lib

_PRIORS = ("none", "gaussian", "laplace")


def _data(config):
  key = jax.random.key(config.seed)
  k1, k2, k3, k4 = jax.random.split(key, 4)
  f = lambda x: jnp.sin(2 * jnp.pi * x)
  x_tr = jax.random.uniform(k1, (config.num_train,))
  y_tr = f(x_tr) + config.noise_std * jax.random.normal(k2, (config.num_train,))
  x_te = jax.random.uniform(k3, (config.num_test,))
  y_te = f(x_te) + config.noise_std * jax.random.normal(k4, (config.num_test,))
  return x_tr, y_tr, x_te, y_te


def _validate(config):
  if config.num_train < 2 or config.num_test < 1:
    raise ValueError("need num_train >= 2 and num_test >= 1")
  for name in ("noise_std", "gaussian_alpha", "laplace_scale", "mlp_prior_scale",
               "learning_rate"):
    if not config[name] > 0:
      raise ValueError(f"config.{name} must be > 0, got {config[name]}")
  if config.max_degree < 0 or any(w < 1 for w in config.widths):
    raise ValueError("max_degree must be >= 0 and widths >= 1")


def _rmse(a, b):
  return jnp.sqrt(jnp.mean((a - b) ** 2, axis=-1))


def polynomial_study(config, data):
  """All degrees x {ML, Gaussian MAP, Laplace MAP} in one vmapped program."""
  x_tr, y_tr, x_te, y_te = data
  beta = 1.0 / config.noise_std ** 2
  md = int(config.max_degree)
  u = lambda x: 2.0 * x - 1.0          # inputs on [-1, 1] for conditioning

  def fit_degree(degree):
    phi_tr = linear_models.polynomial_features(u(x_tr), degree, md)
    phi_te = linear_models.polynomial_features(u(x_te), degree, md)
    ws = {"gaussian": linear_models.gaussian_map(phi_tr, y_tr,
                                                 config.gaussian_alpha, beta),
          "laplace": linear_models.laplace_map(phi_tr, y_tr, config.laplace_scale,
                                               beta, config.laplace_iters)}
    return {k: (_rmse(phi_tr @ w, y_tr), _rmse(phi_te @ w, y_te), w)
            for k, w in ws.items()}

  def fit_ml(degree, x_tr, y_tr, x_te, y_te):
    phi_tr = linear_models.polynomial_features(u(x_tr), degree, md)
    phi_te = linear_models.polynomial_features(u(x_te), degree, md)
    w = linear_models.maximum_likelihood(phi_tr, y_tr)
    return _rmse(phi_tr @ w, y_tr), _rmse(phi_te @ w, y_te), w

  out = jax.jit(jax.vmap(fit_degree))(jnp.arange(md + 1))
  # Maximum likelihood in float64 on the same (float32-drawn) data: the
  # degree-9 design matrix is too ill-conditioned for a float32 solve.
  with jax.enable_x64(True):
    f64 = lambda a: jnp.asarray(a, jnp.float64)
    ml = jax.jit(jax.vmap(fit_ml, in_axes=(0, None, None, None, None)))(
        jnp.arange(md + 1), f64(x_tr), f64(y_tr), f64(x_te), f64(y_te))
    out["ml"] = tuple(np.asarray(a, np.float64) for a in ml)
  return out


def mlp_study(config, data):
  """Per width: seeds x {none, gaussian, laplace} priors as one program."""
  x_tr, y_tr, x_te, y_te = data
  tau = 1.0 / config.noise_std ** 2
  n = x_tr.shape[0]
  opt = optax.adam(config.learning_rate)
  train_data = {"x": x_tr[:, None], "y": y_tr}
  s = config.mlp_prior_scale
  weights = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])   # (gauss, laplace)
  out = {}
  for width in config.widths:
    model = networks.MLP((int(width), 1), activation="tanh")
    apply_fn = lambda p, x, m=model: m.apply({"params": p}, x)[:, 0]

    def one_run(prior_weights, key, model=model, apply_fn=apply_fn):
      log_prior = lambda p: (
          prior_weights[0] * priors.gaussian(s).log_prob({}, p)
          + prior_weights[1] * priors.laplace(s).log_prob({}, p))
      loss_fn = objectives.scale_loss(objectives.make_map_loss_fn(
          objectives.stateless(apply_fn),
          lambda y, out: likelihoods.normal_log_prob(y, out, tau ** -0.5),
          log_prior, n), 1.0 / n)
      fit = train.make_fit(loss_fn, opt, num_epochs=config.mlp_epochs,
                           batch_size=n)
      params = model.init(key, train_data["x"])["params"]
      state, hist = fit(train.init_train_state(params, opt), train_data, key)
      return (_rmse(apply_fn(state.params, x_tr[:, None]), y_tr),
              _rmse(apply_fn(state.params, x_te[:, None]), y_te),
              hist["loss"])

    keys = jax.random.split(jax.random.key(config.seed + 1), config.num_seeds)
    per_prior = jax.vmap(one_run, in_axes=(None, 0))             # over seeds
    tr, te, loss = jax.jit(jax.vmap(per_prior, in_axes=(0, None)))(weights, keys)
    out[int(width)] = (np.asarray(tr), np.asarray(te), np.asarray(loss))
    logging.info("width %d: test RMSE %s", width, np.asarray(te).mean(axis=1))
  return out


def run(config, workdir: str) -> dict:
  """Runs both studies; writes results.json, results.md and curve_fitting.png."""
  validate.check_config("curve_fitting", config)
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  data = _data(config)
  poly = polynomial_study(config, data)
  mlp = mlp_study(config, data)
  poly_rows = []
  for d in range(config.max_degree + 1):
    row = {"degree": d}
    for k in ("ml", "gaussian", "laplace"):
      row[f"{k} train"] = float(poly[k][0][d])
      row[f"{k} test"] = float(poly[k][1][d])
    row["laplace zeros"] = int(np.sum(np.abs(np.asarray(poly["laplace"][2][d])) < 1e-6)
                               - (config.max_degree - d))
    poly_rows.append(row)
  mlp_rows = []
  for width, (tr, te, loss) in mlp.items():
    row = {"width": width}
    for i, p in enumerate(_PRIORS):
      row[f"{p} train"] = float(tr[i].mean())
      row[f"{p} test"] = float(te[i].mean())
      row[f"{p} test sd"] = float(te[i].std())
    row["loss fell"] = bool(np.all(loss[:, :, -1] < loss[:, :, 0]))
    mlp_rows.append(row)
  table = ("## Polynomial fits (RMSE; N = %d, noise %.2f)\n\n"
           "ml: maximum likelihood, exact least squares in float64 (no "
           "ridge); gaussian / laplace: MAP with alpha = %g / b = %g.\n\n" % (
               config.num_train, config.noise_std, config.gaussian_alpha,
               config.laplace_scale)
           + results_lib.markdown_table(poly_rows, precision=3)
           + "\n## One-hidden-layer tanh MLP, MAP (RMSE, mean over %d seeds)\n\n"
           % config.num_seeds
           + results_lib.markdown_table(
               mlp_rows, ["width"] + [f"{p} {w}" for p in _PRIORS
                                      for w in ("train", "test")] + ["loss fell"],
               precision=3))
  results = {"config": config.to_dict(), "polynomial": poly_rows, "mlp": mlp_rows,
             "seconds": time.time() - t0}
  results_lib.write_outputs(workdir, results, table)
  _plot(config, data, poly, mlp, os.path.join(workdir, "curve_fitting.png"))
  return results


def _plot(config, data, poly, mlp, path):
  plt = results_lib.pyplot()
  from matplotlib import ticker
  x_tr, y_tr, _, _ = data
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  degrees = np.arange(config.max_degree + 1)
  for k, c in zip(("ml", "gaussian", "laplace"), ("C0", "C1", "C2")):
    axes[0].plot(degrees, poly[k][0], "o-", color=c, label=f"{k} train")
    axes[0].plot(degrees, poly[k][1], "s--", color=c, label=f"{k} test")
  axes[0].set(xlabel="polynomial degree", ylabel="RMSE (target units, log)",
              yscale="log", title="polynomials: capacity vs error")
  axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18),
                 ncol=3)
  grid = np.linspace(0, 1, 200)
  phi = linear_models.polynomial_features(jnp.asarray(2 * grid - 1),
                                          config.max_degree, config.max_degree)
  axes[1].plot(grid, np.sin(2 * np.pi * grid), "k:", label="sin(2 pi x)")
  axes[1].plot(x_tr, y_tr, "ko", label="train")
  for k, c in zip(("ml", "gaussian", "laplace"), ("C0", "C1", "C2")):
    axes[1].plot(grid, phi @ poly[k][2][-1], color=c, label=f"degree {config.max_degree} {k}")
  axes[1].set(ylim=(-2, 2), title="degree-%d fits" % config.max_degree,
              xlabel="x (input)", ylabel="y (target units)")
  axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18),
                 ncol=2)
  widths = list(mlp)
  for i, (p, c) in enumerate(zip(_PRIORS, ("C0", "C1", "C2"))):
    axes[2].plot(widths, [mlp[w][0][i].mean() for w in widths], "o-", color=c,
                 label=f"{p} train")
    axes[2].plot(widths, [mlp[w][1][i].mean() for w in widths], "s--", color=c,
                 label=f"{p} test")
  axes[2].set(xscale="log", yscale="log", xlabel="hidden units",
              ylabel="RMSE (target units, log)",
              title="MLP (MAP): capacity vs error")
  # Label only the widths used (log-axis minor ticks overlapped them).
  axes[2].set_xticks(widths, [str(w) for w in widths])
  axes[2].xaxis.set_minor_locator(ticker.NullLocator())
  axes[2].xaxis.set_minor_formatter(ticker.NullFormatter())
  # Within a decade, log axes label every minor tick (they overlapped):
  # label 1, 2, 5 x 10^k only.
  axes[2].yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  axes[2].yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
  axes[2].yaxis.set_minor_formatter(ticker.NullFormatter())
  axes[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.18),
                 ncol=3)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("curve_fitting", run)
