r"""Transfer learning: a CNN pre-trained on digits 0-4 re-purposed for 5-9.

1. Pre-train ``jaxbdl.networks.CNN`` (5 classes) on the digits 0-4 of the
   training split; save its parameters with orbax (``jaxbdl.checkpoint.save``)
   to ``<workdir>/pretrained`` and read them back with a shape-checked target.
2. For ``k`` labelled examples per class of digits 5-9 (``k`` in ``shots``;
   drawn by ``jaxbdl.transfer.few_shot_subset``) adapt by

   * ``frozen``: pre-trained features, new head; only ``params["head"]`` is
     trained (``jaxbdl.transfer.frozen_optimizer``);
   * ``finetune``: pre-trained features, new head, all parameters trained;
   * ``scratch``: random initialisation, all parameters trained.

   Each run is full-batch Adam on the few-shot set; the sets are tiled to one
   size (``jaxbdl.transfer.tile_examples``: the mean loss is unchanged) so
   every ``(k, seed)`` pair of a method trains in ONE vmapped program.
3. Test accuracy on the held-out digits 5-9, mean and std over seeds.

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
from jaxbdl import checkpoint
from jaxbdl import data as data_lib
from jaxbdl import likelihoods
from jaxbdl import metrics
from jaxbdl import networks
from jaxbdl import objectives
from jaxbdl import priors
from jaxbdl import results as results_lib
from jaxbdl import train
from jaxbdl import transfer


METHODS = ("frozen", "finetune", "scratch")


def _model(config, num_classes: int) -> networks.CNN:
  c = config.cnn
  return networks.CNN(num_classes=num_classes, features=tuple(c.features),
                      hidden=c.hidden, dropout_rate=c.dropout_rate, pool=c.pool)


def _loss_fn(model, num_data: int):
  """Per-datum categorical negative log-likelihood (flat prior)."""
  return objectives.scale_loss(
      objectives.make_map_loss_fn(objectives.flax_train_apply(model),
                                  likelihoods.categorical, priors.flat,
                                  num_data), 1.0 / num_data)


def load_pretrained(path: str, model: networks.CNN, x_example) -> Any:
  """Restores CNN parameters saved at ``path``, checked against ``model``.

  Args:
    path: a checkpoint directory written by ``jaxbdl.checkpoint.save``.
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
  for m in config.methods:
    if m not in config.adapt.learning_rate:
      raise ValueError(f"adapt.learning_rate has no entry for method {m!r}")


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


def _make_adapter(model, optimizer, size: int, num_steps: int):
  """Jitted full-batch fits of every (k, seed) run as one vmapped program.

  Returns:
    ``adapt(init_params [R, ...], x_few [R, M, 8, 8], y_few [R, M], keys [R])
    -> (params [R, ...], loss [R, num_steps])``.
  """
  fit = train.make_fit(_loss_fn(model, size), optimizer, num_epochs=num_steps,
                       batch_size=size)

  def one(params, x, y, key):
    state, history = fit(train.init_train_state(params, optimizer), (x, y),
                         key)
    return state.params, history["loss"]

  return jax.jit(jax.vmap(one))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Pre-trains, checkpoints, adapts; writes results.json, results.md, plot."""
  _validate(config)
  workdir = results_lib.ensure_workdir(workdir)
  t_start = time.time()
  key = jax.random.key(config.seed)
  k_pre, k_few, k_head, k_fit = jax.random.split(key, 4)

  images, labels = data_lib.load_digits()
  x_tr, y_tr, x_te, y_te = data_lib.train_test_split_arrays(
      config.split_seed, images, labels, config.test_fraction)
  x_src, y_src = transfer.select_classes(x_tr, y_tr, config.source_classes)
  x_src_te, y_src_te = transfer.select_classes(x_te, y_te,
                                               config.source_classes)
  x_pool, y_pool = transfer.select_classes(x_tr, y_tr, config.target_classes)
  x_tgt_te, y_tgt_te = transfer.select_classes(x_te, y_te,
                                               config.target_classes)
  train.check_finite_data((x_src, y_src), "source train")
  num_classes = len(config.target_classes)
  model = _model(config, num_classes)

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
  head_keys = jax.random.split(k_head, num_runs)
  fresh = jax.vmap(lambda kk: model.init(kk, x_src[:1])["params"])(head_keys)
  with_new_head = transfer.replace_head(
      jax.tree_util.tree_map(
          lambda p: jnp.broadcast_to(p, (num_runs,) + p.shape), pretrained),
      fresh["head"])
  fit_keys = jax.random.split(k_fit, num_runs)

  accuracy = {}
  adapters = {}  # One compiled program per distinct optimiser.
  predict = jax.jit(jax.vmap(lambda p, x: model.apply({"params": p}, x),
                             in_axes=(0, None)))
  for method in config.methods:
    lr = float(config.adapt.learning_rate[method])
    if method == "frozen":
      name = ("frozen", lr)
      make_opt = lambda: transfer.frozen_optimizer(optax.adam(lr), pretrained,
                                                   ("head",))
      init = with_new_head
    else:  # finetune and scratch share the program: only the init differs.
      name = ("all", lr)
      make_opt = lambda: optax.adam(lr)
      init = with_new_head if method == "finetune" else fresh
    if name not in adapters:
      adapters[name] = _make_adapter(model, make_opt(), size,
                                     config.adapt.num_steps)
    t0 = time.time()
    params, _ = adapters[name](init, x_few, y_few, fit_keys)
    acc = jax.vmap(metrics.accuracy, in_axes=(None, 0))(
        y_tgt_te, predict(params, x_tgt_te))
    accuracy[method] = np.asarray(acc).reshape(len(shots), s)
    logging.info("%s: %.1f s, accuracy by k %s", method, time.time() - t0,
                 accuracy[method].mean(axis=1))

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
  results["table"] = rows
  results["num_target_test"] = int(x_tgt_te.shape[0])
  results["seconds"] = time.time() - t_start
  table = (f"Test accuracy on digits {list(config.target_classes)} "
           f"({x_tgt_te.shape[0]} images) after adapting with k labelled "
           f"examples per class; mean and std over {s} seeds. Source-task "
           f"test accuracy of the pre-trained CNN: "
           f"{results['source_test_accuracy']:.4f}.\n\n"
           + results_lib.markdown_table(rows, precision=3))
  results_lib.write_outputs(workdir, results, table)
  _plot(workdir, shots, accuracy)
  return results


def _plot(workdir, shots, accuracy):
  plt = results_lib.pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for method, acc in accuracy.items():
    ax.errorbar(shots, acc.mean(axis=1), yerr=acc.std(axis=1), marker="o",
                capsize=3, label=method)
  ax.set_xscale("log")
  ax.set_xlabel("labelled examples per class (k)")
  ax.set_ylabel("test accuracy (digits 5-9)")
  ax.legend()
  results_lib.save_figure(fig, os.path.join(workdir, "accuracy_vs_k.png"))


if __name__ == "__main__":
  launch.main("transfer", run)
