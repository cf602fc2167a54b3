r"""MAML vs joint pre-training on sinusoid regression (Finn et al. 2017, Sec. 5.1).

As in the paper, a *single* model per method is trained on tasks with
``train_shots`` (K = 10) points each and then fine-tuned with each test K in
``shots`` (5 and 10):

* **MAML**: meta-train an MLP (2 x 40 ReLU) with ``jaxbdl.nn.maml``: per task,
  ``inner_steps`` SGD steps of size ``alpha`` on ``train_shots`` support
  points, MSE on as many query points, second-order meta-gradient through the
  inner loop (``first_order=True`` for FOMAML), Adam meta-optimiser, 25 tasks
  per batch. ``step_weights`` weighs the query losses after each inner step
  (``None``: the last step only, the paper's objective).
* **pre-trained**: the same network and number of iterations trained jointly
  on all tasks (the same meta-step with 0 inner steps, i.e. the loss of the
  unadapted network on every task).

Both are then fine-tuned on ``K`` points of each of ``num_test_tasks`` new
tasks with SGD of step size ``alpha`` (up to ``max(test_steps)`` steps, the
same K points every step) and scored by the MSE on ``num_test_points`` fresh
points of the task; the table reports mean +- standard error over test tasks
and the worst task after the last step, so a fine-tuning run that blows up
is visible. Reference (5-shot, as quoted in the brief): MAML 0.67 / 0.35
after 1 / 10 steps, pre-trained 2.41 / 2.19.

Run::

  python -m experiments.meta_learning --workdir /tmp/maml \
      [--config experiments/configs/meta_learning.py[:quick]]
"""
from __future__ import annotations

import os
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
from jaxbdl.nn import maml
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train


METHODS = ("maml", "pretrained")


def _validate(config) -> None:
  if config.num_iterations < 1 or config.log_every < 1:
    raise ValueError("num_iterations and log_every must be >= 1")
  if config.num_iterations % config.log_every:
    raise ValueError(f"num_iterations ({config.num_iterations}) must be a "
                     f"multiple of log_every ({config.log_every})")
  if not config.shots or any(k < 1 for k in config.shots):
    raise ValueError(f"shots must be positive ints, got {config.shots}")
  if config.train_shots < 1:
    raise ValueError(f"train_shots must be >= 1, got {config.train_shots}")
  if not config.test_steps or any(s < 0 for s in config.test_steps):
    raise ValueError(f"test_steps must be ints >= 0, got {config.test_steps}")
  if config.warmup_iterations < 0:
    raise ValueError(f"warmup_iterations must be >= 0, got "
                     f"{config.warmup_iterations}")
  if config.inner_steps < 1:
    raise ValueError(f"inner_steps must be >= 1, got {config.inner_steps}")
  if config.step_weights is not None:
    maml.make_maml_loss_fn(lambda p, d: p, alpha=config.alpha,
                           num_steps=config.inner_steps,
                           step_weights=tuple(config.step_weights))
  networks.get_activation(config.activation)  # Raises for unknown names.
  networks.get_initializer(config.kernel_init, config.init_scale)


def _meta_train(task_loss, params, sample, num_inner_steps, step_weights,
                config, key):
  """Runs ``num_iterations`` meta-steps in jitted chunks of ``log_every``."""
  learning_rate = config.meta_learning_rate
  if config.warmup_iterations:
    # Linear warm-up, then constant: without it Adam's first steps (1e-3
    # against weights of std 0.01) kill half the second-layer ReLUs for good.
    learning_rate = optax.linear_schedule(0.0, learning_rate,
                                          config.warmup_iterations)
  opt = optax.adam(learning_rate)
  step = maml.make_meta_step(task_loss, opt, sample, alpha=config.alpha,
                             num_steps=num_inner_steps,
                             first_order=config.first_order,
                             step_weights=step_weights)
  chunk = jax.jit(maml.make_meta_train(step, config.log_every))
  state = train.init_train_state(params, opt)
  losses = []
  for _ in range(config.num_iterations // config.log_every):
    state, m = chunk(state, key)
    losses.append(np.asarray(m["meta_loss"]))
    logging.info("inner steps %d: iteration %d, meta-loss %.4f",
                 num_inner_steps, int(state.step), float(losses[-1].mean()))
  if not np.all(np.isfinite(np.concatenate(losses))):
    raise FloatingPointError("meta-training produced a non-finite loss")
  return state.params, np.concatenate(losses)


def _summarise(losses: np.ndarray) -> dict[str, Any]:
  """Per-step statistics of ``losses: [T, S + 1]`` (task x adaptation step)."""
  finite = np.isfinite(losses)
  mean, se = metrics.mean_and_se(losses)
  return {"mse_mean_by_step": np.asarray(mean).tolist(),
          "mse_se_by_step": np.asarray(se).tolist(),
          "mse_median_by_step": np.median(losses, 0).tolist(),
          "mse_max_by_step": np.where(finite.all(0), losses.max(0),
                                      np.inf).tolist(),
          "num_nonfinite_by_step": (~finite).sum(0).tolist(),
          # Tasks whose MSE after the last step exceeds that after one step.
          "num_worse_last_than_first":
              int(np.sum(~(losses[:, -1] <= losses[:, min(1, losses.shape[1] - 1)])))}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Meta-trains and evaluates; writes results.json, results.md and plots."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t_start = time.time()
  mlp = networks.MLP(features=tuple(config.hidden) + (1,),
                     activation=config.activation,
                     kernel_init=config.kernel_init,
                     init_scale=config.init_scale)
  apply_fn = lambda p, x: mlp.apply({"params": p}, x)
  task_loss = maml.mse_task_loss(apply_fn)
  key = jax.random.key(config.seed)
  k_init, k_train, k_test = jax.random.split(key, 3)
  max_steps = max(config.test_steps)
  step_weights = (None if config.step_weights is None
                  else tuple(config.step_weights))

  params0 = mlp.init(k_init, jnp.zeros((1, 1)))["params"]
  sample = maml.sinusoid_task_sampler(config.meta_batch_size,
                                      config.train_shots, config.train_shots)
  results: dict[str, Any] = {"config": config.to_dict(), "training": {},
                             "by_shots": {}}
  fits, train_curves = {}, {}
  for method in METHODS:
    inner = config.inner_steps if method == "maml" else 0
    t0 = time.time()
    params, train_loss = _meta_train(
        task_loss, params0, sample, inner,
        step_weights if method == "maml" else None, config, k_train)
    jax.block_until_ready(params)
    window = max(1, train_loss.shape[0] // 10)
    results["training"][method] = {
        "train_seconds": time.time() - t0,
        "initial_train_loss": float(train_loss[:window].mean()),
        "final_train_loss": float(train_loss[-window:].mean())}
    fits[method], train_curves[method] = params, train_loss
    logging.info("%s trained in %.1f s", method,
                 results["training"][method]["train_seconds"])

  rows, curves = [], {}
  evaluate = jax.jit(lambda p, b: maml.evaluate_adaptation(
      task_loss, p, b, config.alpha, max_steps))
  for K in config.shots:
    test_batch = maml.sinusoid_task_sampler(
        config.num_test_tasks, K, config.num_test_points)(
            jax.random.fold_in(k_test, K))
    entry = {}
    for method in METHODS:
      losses = np.asarray(evaluate(fits[method], test_batch))  # [T, S + 1]
      entry[method] = _summarise(losses)
      mean = np.asarray(entry[method]["mse_mean_by_step"])
      se = np.asarray(entry[method]["mse_se_by_step"])
      curves[(K, method)] = (mean, se)
      row = {"K": K, "method": method}
      for s in config.test_steps:
        row[f"{s} step MSE"] = f"{mean[s]:.3f} ± {se[s]:.3f}"
      row[f"worst task, {max_steps} steps"] = (
          f"{entry[method]['mse_max_by_step'][max_steps]:.2f}")
      rows.append(row)
      logging.info("K=%d %s: MSE by step %s, worst task %s", K, method,
                   np.round(mean, 3), entry[method]["mse_max_by_step"][-1])
    results["by_shots"][str(K)] = entry

  results["table"] = rows
  results["seconds"] = time.time() - t_start
  objective = ("query MSE after the last inner step" if step_weights is None
               else f"query MSE weighted {step_weights} over the inner steps")
  table = (f"Post-adaptation MSE (mean ± SE over {config.num_test_tasks} test "
           f"tasks, {config.num_test_points} query points each; worst = "
           f"largest task MSE) of one model per method trained "
           f"{config.num_iterations} iterations on {config.train_shots}-point "
           f"tasks (MAML: {config.inner_steps} inner steps, {objective}; "
           f"Adam({config.meta_learning_rate}) after a "
           f"{config.warmup_iterations}-iteration linear warm-up); "
           f"fine-tuning SGD with alpha = {config.alpha}. Finn et al. (2017), "
           "5-shot: MAML 0.67 / 0.35, pre-trained 2.41 / 2.19 after 1 / 10 "
           "steps.\n\n" + results_lib.markdown_table(rows))
  results_lib.write_outputs(workdir, results, table)
  _plot_curves(workdir, curves, train_curves)
  _plot_fits(workdir, config, task_loss, apply_fn, fits, k_test)
  return results


def _plot_curves(workdir, curves, train_curves):
  plt = results_lib.pyplot()
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
  for (K, method), (mean, se) in curves.items():
    steps = np.arange(mean.shape[0])
    ax0.errorbar(steps, mean, yerr=se, marker=".", capsize=2,
                 label=f"{method}, K={K}")
  for method, train_loss in train_curves.items():
    n = max(1, train_loss.shape[0] // 200)
    smooth = train_loss[: (train_loss.shape[0] // n) * n].reshape(-1, n).mean(1)
    ax1.plot(np.arange(smooth.shape[0]) * n / 1000, smooth, label=method)
  ax0.set_xlabel("gradient steps at test time")
  ax0.set_ylabel("test MSE")
  ax0.set_yscale("log")
  ax0.legend(fontsize=8)
  ax1.set_xlabel("meta-iteration (thousands)")
  ax1.set_ylabel("training loss (query MSE)")
  ax1.set_yscale("log")
  ax1.legend(fontsize=8)
  fig.tight_layout()
  results_lib.save_figure(fig, os.path.join(workdir, "adaptation_curves.png"))


def _plot_fits(workdir, config, task_loss, apply_fn, fits, key):
  """Adapted fits on a few tasks for the smallest K (paper Fig. 2 style)."""
  plt = results_lib.pyplot()
  K = min(config.shots)
  n = config.num_plot_tasks
  x_s, y_s, amp, phase = data_lib.sinusoid_tasks(jax.random.fold_in(key, 999),
                                                 n, K)
  grid = jnp.linspace(-5.0, 5.0, 200)[:, None]
  max_steps = max(config.test_steps)
  fig, axes = plt.subplots(1, n, figsize=(4 * n, 3), squeeze=False)
  predict = jax.jit(
      lambda p, xs, ys, steps: apply_fn(
          maml.inner_adapt(task_loss, p, (xs, ys), config.alpha, steps), grid),
      static_argnums=3)
  for t in range(n):
    ax = axes[0, t]
    truth = amp[t] * jnp.sin(grid[:, 0] - phase[t])
    ax.plot(grid[:, 0], truth, "k-", lw=2, label="truth")
    ax.plot(x_s[t, :, 0], y_s[t, :, 0], "k^", ms=7, label=f"{K} support points")
    for method, params in fits.items():
      for steps, style in ((0, ":"), (1, "--"), (max_steps, "-")):
        ax.plot(grid[:, 0], predict(params, x_s[t], y_s[t], steps)[:, 0], style,
                color="C0" if method == "maml" else "C1",
                label=f"{method}, {steps} step{'' if steps == 1 else 's'}")
    ax.set_title(f"task {t}: A={float(amp[t]):.2f}, phi={float(phase[t]):.2f}")
  axes[0, 0].legend(fontsize=7)
  results_lib.save_figure(fig, os.path.join(workdir, "adapted_fits.png"))


if __name__ == "__main__":
  launch.main("meta_learning", run)
