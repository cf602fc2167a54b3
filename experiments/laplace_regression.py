r"""laplace-torch's regression example with jaxbdl's Laplace approximation.

The example (Daxberger et al. 2021, laplace-torch ``docs/regression_example
.md``): ``x ~ U(0, 8)``, ``y = sin(x) + 0.3 eps`` (N = 150), a 1 x 50 tanh
MLP trained by Adam(1e-2) for 1000 full-batch epochs on the mean squared
error (the MAP), then a post-hoc Laplace approximation whose prior precision
``delta`` and noise ``sigma`` maximise the Laplace evidence (Adam(0.1) on
``log delta, log sigma`` from 1, 1000 steps), and the linearised (GLM)
predictive. Published (full GGN): ``sigma ~ 0.28``, ``delta ~ 0.10``.

Differences from the published run, by necessity: the data and the
initialisation come from jaxbdl's PRNG (seeds ``config.seeds``), not torch's
``manual_seed(711)``, and the network is ``networks.MLP`` (LeCun-normal
kernels, zero biases; torch's ``nn.Linear`` draws both uniformly). The
side-by-side with the SAME data and MAP weights is ``bench/laplace_vs_torch.py``.

For each structure (full, diag, kron, last_layer) and seed: the fitted
``sigma`` and ``delta``, the log evidence, and the test log-likelihood on
``num_test`` fresh points from ``U(0, 8)`` of the GLM predictive vs the MAP
with the same fitted noise.

Run::

  python -m experiments.laplace_regression --workdir workdirs/laplace_regression \
      [--config experiments/configs/laplace_regression.py[:quick]]

Outputs in ``--workdir``: ``results.json``, ``results.md``, ``predictive.png``.

References:
  Daxberger et al. (2021), *Laplace Redux*, NeurIPS; laplace-torch.
  MacKay (1992), *Bayesian interpolation*.
"""
from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import launch
from jaxbdl.nn import networks
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train
from jaxbdl.bayes import laplace

PUBLISHED = {"sigma_noise": 0.28, "prior_precision": 0.10,
             "source": "laplace-torch docs/regression_example.md (full GGN)"}
SUBSETS = {"full": ("all", "full"), "diag": ("all", "diag"),
           "kron": ("all", "kron"), "last_layer": ("last_layer", "full")}


def make_data(config, seed):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 8, (config.num_train, 1)).astype(np.float32)
  y = (np.sin(x[:, 0]) + config.noise_std * rng.normal(size=len(x))
       ).astype(np.float32)
  xt = rng.uniform(0, 8, (config.num_test, 1)).astype(np.float32)
  yt = (np.sin(xt[:, 0]) + config.noise_std * rng.normal(size=len(xt))
        ).astype(np.float32)
  grid = np.linspace(-5, 13, 500, dtype=np.float32)[:, None]
  return x, y, xt, yt, grid


def train_map(config, net, x, y, key):
  """MAP of the example: Adam on the mean squared error, full batch."""
  def loss_fn(params, model_state, batch, key):
    del key
    f = net.apply({"params": params}, batch["x"])[:, 0]
    return jnp.mean((f - batch["y"]) ** 2), (model_state, {})
  opt = optax.adam(config.learning_rate)
  fit = train.make_fit(loss_fn, opt, num_epochs=int(config.num_epochs),
                       batch_size=x.shape[0])
  k_init, k_fit = jax.random.split(key)
  params = net.init(k_init, x[:1])["params"]
  state, hist = jax.jit(fit)(train.init_train_state(params, opt),
                             {"x": jnp.asarray(x), "y": jnp.asarray(y)},
                             k_fit)
  return state.params, hist


def _gauss_ll(y, mean, var):
  return float(np.mean(-0.5 * np.log(2 * np.pi * var)
                       - 0.5 * (y - mean) ** 2 / var))


def run(config, workdir: str) -> dict:
  unknown = [s for s in config.structures if s not in SUBSETS]
  if unknown or not config.structures:
    raise ValueError(f"unknown structure(s) {unknown}; valid: {list(SUBSETS)}")
  t0 = time.time()
  net = networks.MLP((int(config.hidden), 1), activation=config.activation)
  apply_fn = lambda p, x: net.apply({"params": p}, x)  # noqa: E731
  rows, per_seed, plot = [], {s: [] for s in config.structures}, None
  approx = {}
  for seed in config.seeds:
    x, y, xt, yt, grid = make_data(config, seed)
    params, hist = train_map(config, net, x, y, jax.random.key(seed))
    f_test = np.asarray(apply_fn(params, jnp.asarray(xt)))[:, 0]
    for name in config.structures:
      subset, hs = SUBSETS[name]
      if name not in approx:   # one Laplace object: compiled once
        approx[name] = laplace.Laplace(apply_fn, params, "regression",
                                       subset_of_weights=subset,
                                       hessian_structure=hs, chunk_size=150)
      la = approx[name]
      state = la.fit(params, jnp.asarray(x), jnp.asarray(y),
                     prior_precision=math.e, sigma_noise=math.e,
                     map_gradient_tol=np.inf)   # MAP trained without prior
      state, mh = la.optimize_prior_precision(
          state, fit_noise=True, n_steps=int(config.marglik_steps),
          lr=float(config.marglik_lr))
      pred = la.predict(state, jnp.asarray(xt))
      sigma = float(state.sigma_noise)
      rec = {"seed": seed, "sigma_noise": sigma,
             "prior_precision": float(state.prior_precision[0]),
             "log_marglik": float(la.log_marginal_likelihood(state)),
             "test_ll_laplace": _gauss_ll(yt, np.asarray(pred["mean"]),
                                          np.asarray(pred["variance"])),
             "test_ll_map": _gauss_ll(yt, f_test, sigma ** 2),
             "map_final_mse": float(hist["loss"][-1])}
      per_seed[name].append(rec)
      if name == "full" and seed == config.seeds[0]:
        g = la.predict(state, jnp.asarray(grid))
        plot = (x, y, grid, np.asarray(g["mean"]), np.asarray(g["variance"]),
                sigma)
  for name, recs in per_seed.items():
    row = {"structure": name, "seeds": len(recs)}
    for k in ("sigma_noise", "prior_precision", "log_marglik",
              "test_ll_laplace", "test_ll_map"):
      v = np.array([r[k] for r in recs])
      row[k] = float(v.mean())
      row[k + "_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 \
          else float("nan")
    rows.append(row)
  table = results_lib.markdown_table(rows, precision=4)
  table = (f"Laplace on laplace-torch's regression example (mean and SE "
           f"over {len(config.seeds)} seeds). Published (full): sigma ~ "
           f"{PUBLISHED['sigma_noise']}, delta ~ "
           f"{PUBLISHED['prior_precision']} ({PUBLISHED['source']}).\n\n"
           + table)
  res = {"rows": rows, "per_seed": per_seed, "published": PUBLISHED,
         "config": config.to_dict(), "seconds": time.time() - t0,
         "loadavg": list(os.getloadavg()), "jax": jax.__version__}
  results_lib.atomic_write_json(os.path.join(workdir, "results.json"), res)
  results_lib.atomic_write_text(os.path.join(workdir, "results.md"), table)
  _plot(plot, os.path.join(workdir, "predictive.png"), per_seed)
  return res


def _plot(plot, path, per_seed):
  plt = results_lib.pyplot()
  x, y, grid, mean, var, sigma = plot
  f_sd = np.sqrt(np.maximum(var - sigma ** 2, 0.0))
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.scatter(x[:, 0], y, s=6, c="k", label="training data")
  ax.plot(grid[:, 0], mean, label="MAP / GLM mean")
  ax.fill_between(grid[:, 0], mean - 2 * np.sqrt(var), mean + 2 * np.sqrt(var),
                  alpha=0.25, label="GLM predictive +-2 sd")
  ax.fill_between(grid[:, 0], mean - 2 * f_sd, mean + 2 * f_sd, alpha=0.35,
                  label="epistemic +-2 sd")
  r = per_seed["full"][0]
  ax.set_title(f"full Laplace: sigma={r['sigma_noise']:.3f}, delta="
               f"{r['prior_precision']:.3f} (published: 0.28, 0.10)",
               fontsize=9)
  ax.set_xlabel("x (input, unitless)")
  ax.set_ylabel("y (target, unitless)")
  ax.set_ylim(-4, 4)
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
  results_lib.save_figure(fig, path)
  plt.close(fig)


if __name__ == "__main__":
  launch.main("laplace_regression", run)
