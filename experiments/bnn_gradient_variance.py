r"""Variance of the ELBO gradient of a one-hidden-layer BNN, per estimator and layer.

Kingma, Salimans & Welling (2015, "Variational dropout and the local
reparameterization trick", Table 2) compare the variance of the stochastic
ELBO gradient for a single weight sample per minibatch, the local
reparameterisation trick (LRT) and more. This experiment measures, for the
SAME variational parameters of a 1 x ``hidden`` BNN on a UCI data set (or the
built-in diabetes data), the variance of the gradient of the minibatch data
term ``(N / B) sum_b log p(y_b | x_b, W)`` with respect to each layer's
variational means and raw scales, under

* ``pathwise``: one reparameterised weight sample per minibatch
  (``bayesian_layers.DenseReparam``);
* ``lrt``: local reparameterisation (``DenseLRT``; Kingma et al. 2015);
* ``flipout``: ``DenseFlipout`` (Wen et al. 2018);
* ``score_function``: REINFORCE on q over all weights (``elbo.data_term`` with ``estimators.score_function``);
* ``score_function+delta_method``: with the delta-method control variate
  (``control_variates.delta_method``; Mohamed et al. 2020, sec. 7).

Each of ``num_repeats`` draws takes a fresh random minibatch and fresh noise,
so the variance includes minibatch sampling, as in Kingma et al. The KL term
is analytic and adds no variance. Variances are measured at initialisation
and after training with the LRT ELBO for the listed numbers of epochs.

  python -m experiments.bnn_gradient_variance --workdir /tmp/bgv \
      --config experiments/configs/bnn_gradient_variance.py \
      --config.data_dir ../shared/data/uci/concrete
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
from jaxbdl.bayes import bayesian_layers
from jaxbdl.gradients import control_variates, estimators
from jaxbdl.nn import networks
from jaxbdl import data as data_lib
from jaxbdl.training import train
from jaxbdl.bayes import elbo as elbo_lib
from jaxbdl.bayes import likelihoods, priors
from jaxbdl.evaluation import results as results_lib

ESTIMATORS = ("pathwise", "lrt", "flipout", "score_function",
              "score_function+delta_method")
_LAYER_OF = {"pathwise": "reparam", "lrt": "lrt", "flipout": "flipout"}


def _validate(config):
  unknown = [e for e in config.estimators if e not in ESTIMATORS]
  if unknown:
    raise ValueError(f"unknown estimator(s) {unknown}; valid: {list(ESTIMATORS)}")
  if list(config.train_epochs) != sorted(set(config.train_epochs)) or min(
      config.train_epochs) < 0:
    raise ValueError("train_epochs must be increasing and >= 0, got "
                     f"{tuple(config.train_epochs)}")
  if config.num_repeats < 2:
    raise ValueError(f"num_repeats must be >= 2, got {config.num_repeats}")
  for name in ("init_scale", "prior_scale", "noise_scale", "learning_rate"):
    if not config[name] > 0:
      raise ValueError(f"config.{name} must be > 0, got {config[name]}")


def load_regression_data(config):
  """Standardised training split: UCI folder (``data_dir``) or diabetes."""
  if config.data_dir:
    ds = data_lib.load_uci(config.data_dir)
    sp = data_lib.uci_split(ds, config.split)
    return ds.name, np.asarray(sp.x_train), np.asarray(sp.y_train)
  x, y = data_lib.load_diabetes()
  x_tr, y_tr, _, _ = data_lib.train_test_split_arrays(config.seed, x, y, 0.1)
  (x_tr,), _, _ = data_lib.standardise(x_tr)
  (y_tr,), _, _ = data_lib.standardise(y_tr[:, None])
  return "diabetes", x_tr, y_tr[:, 0]


def _minibatch(key, x, y, batch_size):
  idx = jax.random.choice(key, x.shape[0], (batch_size,), replace=False)
  return x[idx], y[idx]


def make_gradient_fn(name, config, x, y):
  """``grad(posterior_params, key) -> grads`` (Bayesian-layer param layout)."""
  n = x.shape[0]
  noise = likelihoods.gaussian(config.noise_scale)
  scale = n / config.batch_size

  def data_term(out, yb):
    return scale * jnp.sum(noise.log_prob({}, yb, out))

  if name in _LAYER_OF:
    model = bayesian_layers.BayesianMLP((config.hidden, 1), layer=_LAYER_OF[name])

    def grad(post, key):
      kb, ks = jax.random.split(key)
      xb, yb = _minibatch(kb, x, y, config.batch_size)
      return jax.grad(lambda p: data_term(
          model.apply({"params": p}, xb, rngs={"sample": ks}), yb))(post)
    return grad

  est = estimators.score_function
  if name == "score_function+delta_method":
    est = control_variates.with_control_variate(est, control_variates.delta_method())
  mlp = networks.MLP((config.hidden, 1))

  def grad(post, key):
    kb, ks = jax.random.split(key)
    xb, yb = _minibatch(kb, x, y, config.batch_size)
    f = lambda w: data_term(mlp.apply({"params": w}, xb), yb)
    var = bayesian_layers.to_var_params(post)
    g = jax.grad(lambda q: elbo_lib.data_term(est, f, q, ks)[0])(var)
    # Back to the Bayesian-layer layout.
    return {layer: {"kernel_loc": g["loc"][layer]["kernel"],
                    "kernel_raw_scale": g["raw_scale"][layer]["kernel"],
                    "bias_loc": g["loc"][layer]["bias"],
                    "bias_raw_scale": g["raw_scale"][layer]["bias"]}
            for layer in g["loc"]}
  return grad


def gradient_variance(grad_fn, post, key, num_repeats):
  """Mean over coordinates of the per-coordinate variance, per layer and param."""
  keys = jax.random.split(key, num_repeats)
  g = jax.vmap(grad_fn, in_axes=(None, 0))(post, keys)
  return jax.tree_util.tree_map(lambda a: jnp.mean(jnp.var(a, axis=0, ddof=1)), g)


def run(config, workdir: str) -> dict:
  """Trains with LRT, measures variances at each stage; writes outputs."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t0 = time.time()
  name, x, y = load_regression_data(config)
  x, y = jnp.asarray(x), jnp.asarray(y)
  n = x.shape[0]
  model = bayesian_layers.BayesianMLP((config.hidden, 1), layer="lrt",
                                      init_scale=config.init_scale)
  prior = priors.gaussian(config.prior_scale)
  noise = likelihoods.gaussian(config.noise_scale)
  key = jax.random.key(config.seed)
  vmodel = elbo_lib.layerwise(
      lambda q, xb, k: model.apply({"params": q}, xb, rngs={"sample": k}),
      bayesian_layers.to_var_params)
  k1, k2 = jax.random.split(key)
  q0 = model.init({"params": k1, "sample": k2}, x[:2])["params"]
  params = elbo_lib.init_params(q0, prior, noise, bayesian_layers.to_var_params)
  opt = optax.adam(config.learning_rate)
  loss_fn = elbo_lib.make_loss_fn(vmodel, noise, prior, n)
  fitter = train.make_fitter(loss_fn, opt, batch_size=config.batch_size)
  fs = fitter.init(train.init_train_state(params, opt))
  grad_fns = {e: jax.jit(lambda post, k, g=make_gradient_fn(e, config, x, y):
                         gradient_variance(g, post, k, config.num_repeats))
              for e in config.estimators}
  rows, done, final_elbo = [], 0, float("nan")
  tb = metric_writers.RunWriter(workdir)
  for stage in config.train_epochs:
    if stage > done:
      run_epochs = jax.jit(fitter.run_epochs, static_argnames="num_epochs")
      fs, hist = run_epochs(fs, {"x": x, "y": y}, key, num_epochs=stage - done)
      final_elbo = float(hist["elbo"][-1])
      tb.write_history(hist, prefix="train/", first_step=done + 1)
      done = stage
    post = fs.train.params["posterior"]
    for e in config.estimators:
      v = grad_fns[e](post, jax.random.fold_in(key, 1000 + stage))
      row = {"epochs": stage, "estimator": e}
      for layer, label in (("Dense_0", "bottom"), ("Dense_1", "top")):
        row[f"{label} mean"] = float(v[layer]["kernel_loc"])
        row[f"{label} raw scale"] = float(v[layer]["kernel_raw_scale"])
      rows.append(row)
      tb.write_scalars(stage, {f"grad_variance/{e}/{k}": v
                               for k, v in row.items() if k not in
                               ("epochs", "estimator")})
      logging.info("epoch %d %s: %s", stage, e, row)
  tb.close()
  columns = ["epochs", "estimator", "bottom mean", "bottom raw scale",
             "top mean", "top raw scale"]
  table = (f"Mean per-coordinate variance of the minibatch ELBO-gradient "
           f"estimate (data term; {config.num_repeats} draws of minibatch "
           f"B={config.batch_size} and noise) w.r.t. the variational means and "
           f"raw scales of the kernels; data set {name} (N={n}), 1 x "
           f"{config.hidden} BNN trained with LRT for the stated epochs.\n\n"
           + results_lib.markdown_table(rows, columns, 3))
  results = {"config": config.to_dict(), "dataset": name, "rows": rows,
             "final_train_elbo": final_elbo, "seconds": time.time() - t0}
  results_lib.write_outputs(workdir, results, table)
  _plot(rows, config, os.path.join(workdir, "bnn_gradient_variance.png"))
  return results


def _plot(rows, config, path):
  plt = results_lib.pyplot()
  cols = ["bottom mean", "top mean", "bottom raw scale", "top raw scale"]
  fig, axes = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3.6))
  stages = list(config.train_epochs)
  width = 0.8 / len(config.estimators)
  for ax, col in zip(axes, cols):
    for j, e in enumerate(config.estimators):
      vals = [r[col] for s in stages for r in rows
              if r["estimator"] == e and r["epochs"] == s]
      ax.bar(np.arange(len(stages)) + j * width, vals, width, label=e)
    ax.set(yscale="log", title=f"Var[grad] w.r.t. {col}",
           xlabel="training epochs before the measurement",
           xticks=np.arange(len(stages)) + 0.4 - width / 2,
           xticklabels=[str(s) for s in stages])
  axes[0].set_ylabel("mean per-coordinate variance\n(squared ELBO units, log)")
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, title="estimator", loc="center left",
             bbox_to_anchor=(1.0, 0.5), fontsize=8)
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("bnn_gradient_variance", run)
