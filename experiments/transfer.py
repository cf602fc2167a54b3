r"""Transfer learning: a CNN pre-trained on digits 0-4 re-purposed for 5-9.

1. Pre-train ``jaxbdl.nn.networks.CNN`` (5 classes) on the digits 0-4 of the
   training split; save its parameters with orbax (``jaxbdl.training.checkpoint.save``)
   to ``<workdir>/pretrained`` and read them back with a shape-checked target.
2. Split the training images of digits 5-9 into a validation part
   (``valid_per_class`` per class, for choosing adaptation hyper-parameters;
   never the test set) and a pool. For ``k`` labelled examples per class of
   the pool (``k`` in ``shots``; drawn by ``jaxbdl.nn.transfer.few_shot_subset``)
   adapt by

   * ``frozen``: pre-trained layers below ``adapt.cut`` fixed, fresh layers
     from the cut up trained (``jaxbdl.nn.transfer.frozen_optimizer``); the
     default cut ``"dense"`` is a new MLP head on the frozen conv features;
   * ``finetune``: the same start, all parameters trained, the pre-trained
     body at ``adapt.body_lr_scale`` times the learning rate
     (``jaxbdl.nn.transfer.split_optimizer``);
   * ``scratch``: random initialisation, all parameters trained.

   Each run is full-batch Adam on the few-shot set; the sets are tiled to one
   size (``jaxbdl.nn.transfer.tile_examples``: the mean loss is unchanged) so
   every ``(k, seed)`` pair of a method trains in ONE vmapped program; the
   draws and fresh initialisations are shared by the methods (paired runs).
3. Test accuracy on the held-out digits 5-9, mean and std over seeds; also
   validation and few-shot training accuracy, and how generic the pre-trained
   features are (effective rank and dead ReLUs on the digits 5-9 at the cut and
   at the penultimate layer, against a randomly initialised CNN).

Reference: Yosinski et al. (2014), "How transferable are features in deep
neural networks?".

Run::

  python -m experiments.transfer --workdir /tmp/transfer \
      [--config experiments/configs/transfer.py[:quick]]
"""
from __future__ import annotations

import math
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
from jaxbdl.training import checkpoint
from jaxbdl import data as data_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.evaluation import metrics
from jaxbdl.nn import networks
from jaxbdl.nn import objectives
from jaxbdl.evaluation import results as results_lib
from jaxbdl.training import train
from jaxbdl.nn import transfer


METHODS = ("frozen", "finetune", "scratch")


def _model(config, num_classes: int) -> networks.CNN:
  c = config.cnn
  return networks.CNN(num_classes=num_classes, features=tuple(c.features),
                      hidden=c.hidden, dropout_rate=c.dropout_rate, pool=c.pool)


def _loss_fn(model, num_data: int, trainable=None):
  """Per-datum categorical negative log-likelihood (flat prior).

  With ``trainable`` (top-level layer names) the other layers get no gradient
  (``jaxbdl.nn.transfer.stop_gradient_except``), so it is not computed.
  """
  loss_fn = objectives.scale_loss(
      objectives.make_map_loss_fn(objectives.flax_train_apply(model),
                                  likelihoods.categorical_log_prob,
                                  lambda p: 0.0,
                                  num_data), 1.0 / num_data)
  if trainable is None:
    return loss_fn
  return lambda params, *args: loss_fn(
      transfer.stop_gradient_except(params, trainable), *args)


def load_pretrained(path: str, model: networks.CNN, x_example) -> Any:
  """Restores CNN parameters saved at ``path``, checked against ``model``.

  Args:
    path: a checkpoint directory written by ``jaxbdl.training.checkpoint.save``.
    model: the network the parameters must fit.
    x_example: an input batch ``[1, 8, 8]`` used to derive the expected
      parameter shapes (no computation: ``jax.eval_shape``).

  Raises:
    FileNotFoundError: there is no checkpoint at ``path``.
    ValueError: the checkpoint's parameter tree or a shape differs from
      ``model``'s (the message names the key and the shapes).
  """
  target = jax.eval_shape(
      lambda: model.init(jax.random.key(0), x_example)["params"])
  return checkpoint.restore(path, target)


def _validate(config) -> None:
  unknown = [m for m in config.methods if m not in METHODS]
  if unknown or not config.methods:
    raise ValueError(f"unknown methods {unknown}; valid: {list(METHODS)}")
  if not config.shots or any(int(k) < 1 for k in config.shots):
    raise ValueError(f"shots must be positive ints, got {config.shots}")
  if set(config.source_classes) & set(config.target_classes):
    raise ValueError("source_classes and target_classes must be disjoint")
  if len(config.source_classes) != len(config.target_classes):
    raise ValueError("this experiment keeps the head size: source and target "
                     "need the same number of classes")
  if config.num_seeds < 1:
    raise ValueError(f"num_seeds must be >= 1, got {config.num_seeds}")
  if config.valid_per_class < 1:
    raise ValueError("valid_per_class must be >= 1, got "
                     f"{config.valid_per_class}")
  for field in ("learning_rate", "num_steps"):
    for m in config.methods:
      if m not in config.adapt[field]:
        raise ValueError(f"adapt.{field} has no entry for method {m!r}")
  if not 0.0 <= config.adapt.body_lr_scale:
    raise ValueError("adapt.body_lr_scale must be >= 0, got "
                     f"{config.adapt.body_lr_scale}")


def _pretrain(config, model, x_src, y_src, key):
  p = config.pretrain
  opt = optax.adam(p.learning_rate)
  fit = train.make_fit(_loss_fn(model, x_src.shape[0]), opt,
                       num_epochs=p.num_epochs, batch_size=p.batch_size)
  init_key, fit_key = jax.random.split(key)

  @jax.jit
  def go(data):
    params = model.init(init_key, x_src[:1])["params"]
    state, history = fit(train.init_train_state(params, opt), data, fit_key)
    return state.params, history["loss"]

  return go((x_src, y_src))


def _few_shot_sets(key, x_pool, y_pool, shots, num_seeds, num_classes, size):
  """Few-shot sets ``x [len(shots) * S, size, 8, 8]``, labels ``[.., size]``."""
  xs, ys = [], []
  keys = jax.random.split(key, num_seeds)
  classes = tuple(range(num_classes))
  for k in shots:
    draw = jax.vmap(lambda kk, k=k: transfer.tile_examples(
        transfer.few_shot_subset(kk, x_pool, y_pool, classes, int(k)), size))
    x_k, y_k = draw(keys)
    xs.append(x_k)
    ys.append(y_k)
  return jnp.concatenate(xs), jnp.concatenate(ys)


def _split_valid(x, y, per_class: int, num_classes: int, seed: int):
  """Holds out ``per_class`` examples of each class: ``(x_pool, y_pool, x_val, y_val)``."""
  rng = np.random.default_rng(seed)
  valid = []
  for c in range(num_classes):
    idx = np.flatnonzero(y == c)
    if idx.size <= per_class:
      raise ValueError(f"target class {c} has {idx.size} training images; "
                       f"cannot hold out valid_per_class={per_class}")
    valid.append(rng.choice(idx, per_class, replace=False))
  valid = np.concatenate(valid)
  keep = np.ones(y.shape[0], bool)
  keep[valid] = False
  return x[keep], y[keep], x[valid], y[valid]


def _feature_stats(model, params, x, layer: str) -> dict[str, float]:
  """Effective rank and dead-ReLU fraction of the input of ``layer`` on ``x``.

  Effective rank: ``exp(entropy(s / sum(s)))`` of the singular values ``s`` of
  the centred features ``[N, D]`` (Roy & Vetterli 2007); a unit is dead when
  it is zero on every image.
  """
  f = np.asarray(model.apply({"params": params}, x, layer,
                             method="layer_input")).reshape(x.shape[0], -1)
  s = np.linalg.svd(f - f.mean(axis=0), compute_uv=False)
  p = s / s.sum()
  entropy = -np.sum(p * np.log(np.where(p > 0, p, 1.0)))
  return {"dim": int(f.shape[1]), "effective_rank": float(np.exp(entropy)),
          "dead_fraction": float(np.mean(f.max(axis=0) <= 0.0))}


def _make_adapter(model, optimizer, size: int, num_steps: int,
                  trainable=None):
  """Full-batch fits of every (k, seed) run as one vmapped program.

  A Python loop over a jitted, vmapped ``jaxbdl.training.train.make_train_step`` (the
  step's key is ``fold_in(key, step)``, as in ``jaxbdl.training.train``): on CPU, XLA
  runs these vmapped conv gradients inside a ``lax.scan`` (``train.make_fit``)
  about 2.5x slower than at the top level of a program (measured on 2 cores,
  20 runs of 250 images: 2.0 s vs 0.7 s per step).

  Returns:
    ``adapt(init_params [R, ...], x_few [R, M, 8, 8], y_few [R, M], keys [R])
    -> (params [R, ...], loss [R, num_steps])``.
  """
  step = train.make_train_step(_loss_fn(model, size, trainable), optimizer)
  init = jax.jit(jax.vmap(lambda p: train.init_train_state(p, optimizer)))
  keyed_step = jax.jit(jax.vmap(
      lambda state, batch, key: step(state, batch,
                                     jax.random.fold_in(key, state.step))))

  def adapt(params, x, y, keys):
    state = init(params)
    losses = []
    for _ in range(num_steps):
      state, metrics = keyed_step(state, (x, y), keys)
      losses.append(metrics["loss"])
    return state.params, jnp.stack(losses, axis=1)

  return adapt


def _optimizer(config, method: str, params, new_layers):
  lr = float(config.adapt.learning_rate[method])
  if method == "frozen":
    return transfer.frozen_optimizer(optax.adam(lr), params, new_layers)
  if method == "finetune":
    return transfer.split_optimizer(
        optax.adam(lr), optax.adam(lr * float(config.adapt.body_lr_scale)),
        params, new_layers)
  return optax.adam(lr)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Pre-trains, checkpoints, adapts; writes results.json, results.md, plot."""
  _validate(config)
  t_start = time.time()
  key = jax.random.key(config.seed)
  k_pre, k_few, k_head, k_fit = jax.random.split(key, 4)
  num_classes = len(config.source_classes)
  model = _model(config, num_classes)
  new_layers = transfer.layers_from(model.layer_names, config.adapt.cut)
  workdir = results_lib.ensure_workdir(workdir)

  images, labels = data_lib.load_digits()
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      config.split_seed, images, labels, config.test_fraction)
  x_src, y_src = transfer.select_classes(x_tr, y_tr, config.source_classes)
  x_src_te, y_src_te = transfer.select_classes(x_te, y_te,
                                               config.source_classes)
  x_tgt, y_tgt = transfer.select_classes(x_tr, y_tr, config.target_classes)
  x_pool, y_pool, x_val, y_val = _split_valid(
      x_tgt, y_tgt, int(config.valid_per_class), num_classes,
      config.split_seed)
  x_tgt_te, y_tgt_te = transfer.select_classes(x_te, y_te,
                                               config.target_classes)
  train.check_finite_data((x_src, y_src), "source train")

  # 1. Pre-train (or reuse) and round-trip through an orbax checkpoint.
  results: dict[str, Any] = {"config": config.to_dict()}
  if config.pretrained_checkpoint:
    ckpt_path = config.pretrained_checkpoint
  else:
    t0 = time.time()
    params, pre_loss = _pretrain(config, model, x_src, y_src, k_pre)
    ckpt_path = checkpoint.save(os.path.join(workdir, "pretrained"), params,
                                step=int(config.pretrain.num_epochs),
                                overwrite=True)
    results["pretrain_seconds"] = time.time() - t0
    results["pretrain_final_loss"] = float(pre_loss[-1])
    logging.info("pre-trained in %.1f s, saved to %s",
                 results["pretrain_seconds"], ckpt_path)
  pretrained = load_pretrained(ckpt_path, model, x_src[:1])
  results["checkpoint"] = ckpt_path
  logits = model.apply({"params": pretrained}, x_src_te)
  results["source_test_accuracy"] = float(metrics.accuracy(y_src_te, logits))

  # 2. Few-shot sets for every (k, seed): [R = len(shots) * S, M, ...].
  shots = tuple(int(k) for k in config.shots)
  s = config.num_seeds
  size = num_classes * math.lcm(*shots)
  x_few, y_few = _few_shot_sets(k_few, x_pool, y_pool, shots, s, num_classes,
                                size)
  num_runs = x_few.shape[0]
  fresh = jax.vmap(lambda kk: model.init(kk, x_src[:1])["params"])(
      jax.random.split(k_head, num_runs))
  with_new_top = transfer.reinit(
      jax.tree_util.tree_map(
          lambda p: jnp.broadcast_to(p, (num_runs,) + p.shape), pretrained),
      fresh, new_layers)
  fit_keys = jax.random.split(k_fit, num_runs)

  # How generic are the pre-trained features on the target digits?
  random_params = jax.tree_util.tree_map(lambda p: p[0], fresh)
  results["features"] = {
      f"{name} {layer}": _feature_stats(model, p, x_tgt, layer)
      for layer in dict.fromkeys((config.adapt.cut, "head"))
      for name, p in (("pretrained", pretrained), ("random", random_params))}

  accuracy, valid_accuracy, train_accuracy = {}, {}, {}
  predict = jax.jit(jax.vmap(lambda p, x: model.apply({"params": p}, x)))
  predict_all = jax.jit(jax.vmap(lambda p, x: model.apply({"params": p}, x),
                                 in_axes=(0, None)))
  acc_all = jax.vmap(metrics.accuracy, in_axes=(None, 0))
  for method in config.methods:
    init = fresh if method == "scratch" else with_new_top
    adapter = _make_adapter(
        model, _optimizer(config, method, pretrained, new_layers), size,
        int(config.adapt.num_steps[method]),
        new_layers if method == "frozen" else None)
    t0 = time.time()
    params, _ = adapter(init, x_few, y_few, fit_keys)
    shape = (len(shots), s)
    accuracy[method] = np.asarray(acc_all(
        y_tgt_te, predict_all(params, x_tgt_te))).reshape(shape)
    valid_accuracy[method] = np.asarray(acc_all(
        y_val, predict_all(params, x_val))).reshape(shape)
    train_accuracy[method] = np.asarray(jax.vmap(metrics.accuracy)(
        y_few, predict(params, x_few))).reshape(shape)
    logging.info("%s: %.1f s, test accuracy by k %s", method,
                 time.time() - t0, accuracy[method].mean(axis=1))

  rows = []
  for i, k in enumerate(shots):
    row = {"k": k}
    for method in config.methods:
      a = accuracy[method][i]
      row[f"{method} mean"] = float(a.mean())
      row[f"{method} std"] = float(a.std())
    rows.append(row)
  results["shots"] = list(shots)
  results["accuracy"] = {m: a.tolist() for m, a in accuracy.items()}
  results["valid_accuracy"] = {m: a.tolist()
                               for m, a in valid_accuracy.items()}
  results["train_accuracy"] = {m: a.tolist()
                               for m, a in train_accuracy.items()}
  results["table"] = rows
  if "scratch" in accuracy:  # paired: same draws and initialisations.
    results["gain_over_scratch"] = {}
    for m in config.methods:
      if m == "scratch":
        continue
      gain = accuracy[m] - accuracy["scratch"]
      se = (gain.std(axis=1, ddof=1) / np.sqrt(s) if s > 1
            else np.full(len(shots), np.nan))
      results["gain_over_scratch"][m] = {"mean": gain.mean(axis=1).tolist(),
                                         "se": se.tolist()}
  results["num_target_test"] = int(x_tgt_te.shape[0])
  results["num_target_valid"] = int(x_val.shape[0])
  results["seconds"] = time.time() - t_start
  table = (f"Test accuracy on digits {list(config.target_classes)} "
           f"({x_tgt_te.shape[0]} images) after adapting with k labelled "
           f"examples per class; mean and std over {s} seeds. frozen / "
           f"finetune: pre-trained layers below {config.adapt.cut!r} "
           f"(fixed / trained) with new layers from it up; scratch: random "
           f"init; hyper-parameters chosen on {x_val.shape[0]} validation "
           f"images. Source-task test accuracy of the pre-trained CNN: "
           f"{results['source_test_accuracy']:.4f}.\n\n"
           + results_lib.markdown_table(rows, precision=3))
  results_lib.write_outputs(workdir, results, table)
  _plot(workdir, shots, accuracy)
  return results


def _plot(workdir, shots, accuracy):
  """Accuracy vs k (mean, std over seeds) and the paired gain over scratch."""
  plt = results_lib.pyplot()
  fig, (ax, ax_gain) = plt.subplots(1, 2, figsize=(9, 3.5))
  shots = np.asarray(shots, float)
  for i, (method, acc) in enumerate(accuracy.items()):
    x = shots * 1.06 ** (i - 1)  # small offsets so the error bars stay apart.
    ax.errorbar(x, acc.mean(axis=1), yerr=acc.std(axis=1), marker="o",
                capsize=3, label=method)
    if method != "scratch" and "scratch" in accuracy:
      gain = acc - accuracy["scratch"]  # same draws and inits: paired.
      se = (gain.std(axis=1, ddof=1) / np.sqrt(gain.shape[1])
            if gain.shape[1] > 1 else np.zeros(len(shots)))
      ax_gain.errorbar(x, gain.mean(axis=1), yerr=se, marker="o", capsize=3,
                       color=f"C{i}", label=method)
  for a in (ax, ax_gain):
    a.set_xscale("log")
    a.set_xticks(shots, [str(int(k)) for k in shots])
    a.minorticks_off()
    a.set_xlabel("labelled examples per class (k)")
  ax.set_ylabel("test accuracy (digits 5-9)")
  ax.legend()
  ax_gain.axhline(0.0, color="grey", lw=1)
  ax_gain.set_ylabel("accuracy minus scratch (mean, SE)")
  if ax_gain.lines:
    ax_gain.legend()
  fig.tight_layout()
  results_lib.save_figure(fig, os.path.join(workdir, "accuracy_vs_k.png"))


if __name__ == "__main__":
  launch.main("transfer", run)
