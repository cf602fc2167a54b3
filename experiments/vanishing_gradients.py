r"""Vanishing and exploding gradients: activations x initialisations.

For deep MLPs (default 10 hidden layers of 64 units) on scikit-learn's digits,
measures per-example gradient norms with respect to each layer's weights and
pre-activations, and each layer's activation variance, at initialisation and
after a few epochs of SGD, for sigmoid, tanh and ReLU under normal(0.01 / 0.1 /
1), Glorot and He initialisation (Glorot & Bengio 2010; He et al. 2015). All
seeds and initialisations of one activation run as one vmapped program.

  python -m experiments.vanishing_gradients --workdir /tmp/vg
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
from jaxbdl import data as data_lib
from jaxbdl.nn import diagnostics, networks
from jaxbdl.training import train
from jaxbdl.bayes import likelihoods
from jaxbdl.evaluation import results as results_lib

def _validate(config):
  for a in config.activations:
    networks.get_activation(a)
  for name, scale in config.inits:
    networks.get_initializer(name, scale)
  for field in ("num_seeds", "depth", "width", "num_stat_examples",
                "train_epochs", "batch_size"):
    if int(config[field]) < 1:
      raise ValueError(f"config.{field} must be >= 1, got {config[field]}")
  if not config.learning_rate > 0:
    raise ValueError(f"config.learning_rate must be > 0, got {config.learning_rate}")


def _example_loss(y, out):
  return -likelihoods.categorical_log_prob(y, out)


def run(config, workdir: str) -> dict:
  """Runs the study; writes results.json, results.md and vanishing_gradients.png."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  images, labels = data_lib.load_digits()
  x = images.reshape(images.shape[0], -1)
  y = labels
  features = (int(config.width),) * int(config.depth) + (10,)
  x_stat = jnp.asarray(x[:config.num_stat_examples])
  y_stat = jnp.asarray(y[:config.num_stat_examples])
  keys = jax.random.split(jax.random.key(config.seed), config.num_seeds)
  opt = optax.sgd(config.learning_rate)
  inits = [tuple(i) for i in config.inits]
  rows, curves = [], {}
  t0 = time.time()
  for act in config.activations:
    apply_model = networks.MLP(features, activation=act)

    def loss_fn(params, model_state, batch, key, model=apply_model):
      del key
      out = model.apply({"params": params}, batch["x"])
      loss = -jnp.mean(likelihoods.categorical_log_prob(batch["y"], out))
      return loss, (model_state, {})

    fit = train.make_fit(loss_fn, opt, num_epochs=config.train_epochs,
                         batch_size=config.batch_size)
    # Stack parameters [num_inits * num_seeds, ...]; apply does not depend on
    # the initialiser, so one program serves every initialisation.
    params = []
    for name, scale in inits:
      m = networks.MLP(features, activation=act, kernel_init=name,
                       init_scale=scale)
      params.append(jax.vmap(lambda k, m=m: m.init(k, x_stat[:1])["params"])(keys))
    params = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *params)
    stats_fn = jax.jit(jax.vmap(
        lambda p: diagnostics.layer_stats(apply_model, p, x_stat, y_stat,
                                          _example_loss)))
    before = stats_fn(params)
    states = jax.vmap(lambda p: train.init_train_state(p, opt))(params)
    run_keys = jnp.concatenate([keys] * len(inits))
    states, history = jax.jit(jax.vmap(fit, in_axes=(0, None, 0)))(
        states, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, run_keys)
    after = stats_fn(states.params)
    logging.info("activation %s done (%.1fs)", act, time.time() - t0)
    s = int(config.num_seeds)
    for i, (name, scale) in enumerate(inits):
      sl = slice(i * s, (i + 1) * s)
      label = f"{name}({scale:g})"
      entry = {}
      for when, st in (("init", before), ("trained", after)):
        w = np.asarray(st.weight_grad_norm[sl])     # [S, N, L]
        p = np.asarray(st.preact_grad_norm[sl])     # [S, N, L-1]
        v = np.asarray(st.activation_var[sl])       # [S, L-1]
        entry[when] = {
            "weight_grad_norm": w.mean(axis=(0, 1)),
            "preact_grad_norm": p.mean(axis=(0, 1)),
            "activation_var": v.mean(axis=0),
            "weight_ratio_first_last": np.asarray(
                diagnostics.first_to_last_ratio(w)),
            "preact_ratio_first_last": np.asarray(
                diagnostics.first_to_last_ratio(p)),
        }
      final_loss = np.asarray(history["loss"][sl, -1])
      curves[(act, label)] = entry
      rows.append({
          "activation": act, "init": label,
          "weight ratio (init)": float(np.mean(entry["init"]["weight_ratio_first_last"])),
          "delta ratio (init)": float(np.mean(entry["init"]["preact_ratio_first_last"])),
          "act var first/last (init)": float(np.mean(
              entry["init"]["activation_var"][0] / entry["init"]["activation_var"][-1])),
          "delta ratio (trained)": float(np.mean(entry["trained"]["preact_ratio_first_last"])),
          "train loss": float(np.mean(final_loss)),
      })
  elapsed = time.time() - t0
  columns = list(rows[0].keys())
  table = ("Ratio of first- to last-layer mean per-example gradient norm "
           "(weights; pre-activation deltas), activation-variance ratio, mean "
           f"over {config.num_seeds} seeds; depth {config.depth}, width "
           f"{config.width}. Train loss after {config.train_epochs} epochs of "
           "SGD (nan = diverged).\n\n" + results_lib.markdown_table(rows, columns, 3))
  results = {
      "config": config.to_dict(), "rows": rows, "seconds": elapsed,
      "curves": {f"{a}/{l}": e for (a, l), e in curves.items()},
  }
  results_lib.write_outputs(workdir, results, table)
  _plot(curves, config, os.path.join(workdir, "vanishing_gradients.png"))
  return results


def _plot(curves, config, path):
  plt = results_lib.pyplot()
  from matplotlib import ticker
  acts = list(config.activations)
  fig, axes = plt.subplots(len(acts), 3, figsize=(14, 3.4 * len(acts)),
                           squeeze=False)
  titles = ("|dL/dW_l| per example", "|dL/da_l| per example (delta)",
            "Var[h_l]")
  keys = ("weight_grad_norm", "preact_grad_norm", "activation_var")
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for r, act in enumerate(acts):
    labels = [l for (a, l) in curves if a == act]
    for c, (title, key) in enumerate(zip(titles, keys)):
      ax = axes[r, c]
      for j, label in enumerate(labels):
        e = curves[(act, label)]
        col = colours[j % len(colours)]
        for when, style in (("init", "-"), ("trained", "--")):
          vals = np.asarray(e[when][key], np.float64)
          ax.plot(np.arange(len(vals)), vals, style, color=col,
                  label=f"{label}" if when == "init" else None)
      ax.set_yscale("log")
      ax.set_xlabel("layer (input side = 0)")
      ax.xaxis.set_major_locator(
          ticker.MaxNLocator(integer=True))
      ax.set_ylabel(("norm" if c < 2 else "variance") + " (log scale)")
      ax.set_title(f"{act}: {title}")
      if c == 2:
        ax.legend(fontsize=7, title="solid: init, dashed: trained",
                  title_fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.02, 1.0))
  fig.tight_layout()
  results_lib.save_figure(fig, path)


if __name__ == "__main__":
  launch.main("vanishing_gradients", run)
