"""Bring your own data: every registered posterior approximation on FILE.npz.

  python -m experiments.fit --workdir W --data FILE.npz \
      --method NAME[,NAME]|all [--task regression|classification] \
      [--config experiments/configs/fit.py[:quick]] [--config.FIELD=...]

``FILE.npz`` holds ``x_train [N, D]``, ``y_train [N]`` (floats for
regression, integer labels ``0..C-1`` for classification), ``x_test [M, D]``
and optionally ``y_test [M]``. Outputs: ``W/<method>/predictions.npz`` with
``mean [M]`` and ``variance [M]`` (the predictive, observation noise
included, in data units) or ``probs [M, C]``; ``W/results.json`` with, per
method, test metrics when ``y_test`` is given (regression ``rmse``, ``ll``;
classification ``accuracy``, ``nll``, ``ece``, ``brier``) and ``seconds``;
``W/results.md``; training curves (the method's per-epoch history, e.g.
``loss``, ``valid_metric``) and the test metrics as TensorBoard event files
in ``W/<method>/`` (``tensorboard --logdir W``). ``--method all`` runs every method in
``jaxbdl.bayes.registry.METHODS``, including those added later. Methods that
want a validation part for early stopping get it from the TRAINING data.
"""
from __future__ import annotations

import os
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import launch
from jaxbdl.evaluation import metric_writers
from jaxbdl.evaluation import metrics
from jaxbdl.training import progress
from jaxbdl.evaluation import results as results_lib
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

__all__ = ["load_npz", "check_inputs", "run_fit", "run"]

TASKS = ("regression", "classification")


def load_npz(path: str, task: str) -> dict:
  """Loads and validates ``path``; raises ``ValueError`` naming the problem."""
  if task not in TASKS:
    raise ValueError(f"--task must be one of {list(TASKS)}, got {task!r}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--data {path!r} does not exist")
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: np.asarray(f[k]) for k in f.files}
  except Exception as e:  # not an npz / corrupt
    raise ValueError(f"{path}: not a readable .npz file ({e})") from None
  for k in ("x_train", "y_train", "x_test"):
    if k not in arrays:
      raise ValueError(f"{path}: missing array {k!r} (has {sorted(arrays)})")
  d = {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")
       if k in arrays}
  for k in ("x_train", "x_test"):
    if d[k].ndim != 2:
      raise ValueError(f"{path}: {k} must be [N, D], got shape {d[k].shape}")
  if d["x_test"].shape[1] != d["x_train"].shape[1]:
    raise ValueError(f"{path}: x_test has {d['x_test'].shape[1]} features, "
                     f"x_train {d['x_train'].shape[1]}")
  for kx, ky in (("x_train", "y_train"), ("x_test", "y_test")):
    if ky in d and d[ky].shape != (d[kx].shape[0],):
      raise ValueError(f"{path}: {ky} must be [{d[kx].shape[0]}] to match "
                       f"{kx}, got shape {d[ky].shape}")
  for k, a in d.items():
    if not np.issubdtype(a.dtype, np.number):
      raise ValueError(f"{path}: {k} must be numeric, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
      first = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
      raise ValueError(f"{path}: {k} has a NaN/inf value at index {first}")
  if d["x_train"].shape[0] < 2:
    raise ValueError(f"{path}: x_train needs at least 2 rows")
  if task == "classification":
    for k in ("y_train", "y_test"):
      if k in d:
        y = d[k]
        if np.any(y != np.round(y)) or np.any(y < 0):
          raise ValueError(f"{path}: {k} must hold integer labels >= 0 for "
                           "classification")
    d["num_classes"] = int(d["y_train"].max()) + 1
    if d["num_classes"] < 2:
      raise ValueError(f"{path}: y_train has a single class")
    if "y_test" in d and d["y_test"].max() >= d["num_classes"]:
      raise ValueError(f"{path}: y_test has label {int(d['y_test'].max())} "
                       f"not seen in y_train (classes 0..{d['num_classes']-1})")
  return d


def _model(config, task: str, num_classes: int, noise_scale):
  prior = lambda hp: priors.gaussian(hp["prior_scale"])
  if task == "classification":
    lik = lambda hp: likelihoods.categorical(num_classes)
    k = num_classes
  else:
    k = 1
    if noise_scale is None:
      lik = lambda hp: likelihoods.gaussian(None)
    else:
      lik = lambda hp: likelihoods.gaussian(hp["noise_scale"])
  return posterior.mlp_model(tuple(config.hidden), k, lik, prior,
                             activation=config.activation)


def run_fit(config, d: dict, task: str, method: str, workdir: str) -> dict:
  """Fits one method on validated data ``d``; writes its predictions."""
  x, y, xt = (np.asarray(d[k], np.float32) for k in ("x_train", "y_train",
                                                      "x_test"))
  x_mu, x_sd = np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
  y_mu, y_sd = 0.0, 1.0
  if config.standardize:
    x_mu, x_sd = x.mean(0), x.std(0)
    x_sd = np.where(x_sd > 0, x_sd, 1.0).astype(np.float32)
    if task == "regression":
      y_mu, y_sd = float(y.mean()), float(y.std()) or 1.0
  x, xt = (x - x_mu) / x_sd, (xt - x_mu) / x_sd
  if task == "regression":
    y = (y - y_mu) / y_sd
  else:
    y = y.astype(np.int32)
  noise = (float(config.noise_scale) / y_sd if config.noise_scale > 0
           else None)
  model = _model(config, task, d.get("num_classes", 0), noise)
  mc = registry.method_config(method, config)
  post = registry.METHODS[method](model, mc)
  hp = registry.default_hparams(method, config)
  hp["noise_scale"] = 1.0 if noise is None else noise
  key = jax.random.key(int(config.seed))
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  valid = None
  n_val = int(round(post.valid_fraction * len(x)))
  if n_val:
    perm = np.random.RandomState(int(config.seed)).permutation(len(x))
    valid = {k: v[perm[:n_val]] for k, v in data.items()}
    data = {k: v[perm[n_val:]] for k, v in data.items()}
  t0 = time.time()
  state, history = jax.jit(post.fit)(key, data, hp, valid)
  pred = jax.jit(post.predict)(state, jnp.asarray(xt),
                               jax.random.fold_in(key, 1), hp)
  pred = jax.tree_util.tree_map(np.asarray, pred)
  seconds = time.time() - t0
  summary = {k: np.asarray(v) for k, v in
             likelihoods.mixture_summary(pred).items()}
  out_dir = os.path.join(workdir, method)
  os.makedirs(out_dir, exist_ok=True)
  res = {"seconds": seconds}
  if task == "regression":
    mean = summary["mean"] * y_sd + y_mu
    var = summary["variance"] * y_sd ** 2
    np.savez(os.path.join(out_dir, "predictions.npz"), mean=mean,
             variance=var)
    if "y_test" in d:
      yt = np.asarray(d["y_test"], np.float64)
      res["rmse"] = float(np.sqrt(np.mean((yt - mean) ** 2)))
      ll = likelihoods.mixture_log_prob(pred, (yt - y_mu) / y_sd)
      res["ll"] = float(np.mean(ll) - np.log(y_sd))
  else:
    probs = summary["probs"]
    np.savez(os.path.join(out_dir, "predictions.npz"), probs=probs)
    if "y_test" in d:
      yt = np.asarray(d["y_test"], np.int32)
      p_true = np.clip(probs[np.arange(len(yt)), yt], 1e-12, None)
      onehot = np.eye(probs.shape[1])[yt]
      res.update(accuracy=float(np.mean(probs.argmax(1) == yt)),
                 nll=float(-np.mean(np.log(p_true))),
                 ece=float(metrics.expected_calibration_error(yt, probs)),
                 brier=float(np.mean(np.sum((probs - onehot) ** 2, 1))))
  with metric_writers.open_run(workdir, method) as w:
    if isinstance(history, dict):
      w.write_history({k: v for k, v in history.items()
                       if np.ndim(v) == 1}, prefix="train/")
    w.write_scalars(0, {f"test/{k}": v for k, v in res.items()})
  return res


def check_inputs(config, data_path: str, methods: str, task: str):
  """``(data, method names)``, checked before any work; raises ``ValueError``
  / ``FileNotFoundError`` with one line naming the problem."""
  d = load_npz(data_path, task)
  probe = _model(config, task, d.get("num_classes", 0), None)
  return d, registry.check_names(methods, probe.module)


def run(config, workdir: str, data_path: str, methods: str,
        task: str = "regression", checked=None) -> dict:
  """Validates everything, then fits each method; writes ``results.json``.

  ``checked``: what :func:`check_inputs` returned for these arguments (the
  command line checks first; the data file is then read once).
  """
  d, names = checked or check_inputs(config, data_path, methods, task)
  results = {"data": os.path.abspath(data_path), "task": task, "methods": {}}
  for name in names:
    with progress.phase(f"fit {name}") as line:
      results["methods"][name] = run_fit(config, d, task, name, workdir)
      line.update({k: v for k, v in results["methods"][name].items()
                   if k != "seconds"})
    rows = [dict(method=m, **r) for m, r in results["methods"].items()]
    results_lib.write_outputs(workdir, results,
                              results_lib.markdown_table(rows, precision=4))
  return results


def main(argv):
  del argv
  launch.quiet_logs(sys.argv)
  f = flags.FLAGS
  checked = launch.check_input("fit", check_inputs, f.config, f.data,
                               f.method, f.task)
  workdir = results_lib.ensure_workdir(f.workdir)
  res = run(f.config, workdir, f.data, f.method, f.task, checked)
  print(launch.default_report(res, workdir))


if __name__ == "__main__":
  launch.define_flags("fit")
  flags.DEFINE_string("data", None, "The .npz file.", required=True)
  flags.DEFINE_string("method", "all", "Method name(s), comma-separated, or "
                      "'all'.")
  flags.DEFINE_enum("task", "regression", list(TASKS), "The task.")
  app.run(main)
