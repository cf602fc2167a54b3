"""The UCI regression protocol, wired from the core's method registry.

Protocol (Hernández-Lobato & Adams 2015; Gal & Ghahramani 2016): on each of
the standard splits, fit on the standardised training split, predict the test
split, score test RMSE and log-likelihood in ORIGINAL units; report mean and
standard error ``std(ddof 0) / sqrt(K)`` over splits. All splits (and grid
points) train as ONE ``jax.jit(vmap(...))`` program of the registered
method's ``fit`` / ``predict`` (``jaxbdl.bayes.registry``).

Selection happens on validation data only: :func:`select_and_evaluate` holds
out ``valid_fraction`` of every TRAINING split, trains each grid point (a
one-point "grid" when nothing is tuned) on the rest, scores the held-out
rows, picks per split the best validation log-likelihood, refits on the whole
training split and scores the test split once. The validation score of the
chosen point is what compares methods (``best_by_validation`` in
``experiments.uci_regression``); test scores are never used to choose.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxbdl import data as data_lib
from jaxbdl.evaluation import metrics
from jaxbdl.training import train
from jaxbdl.bayes import likelihoods
from jaxbdl.bayes import posterior
from jaxbdl.bayes import priors
from jaxbdl.bayes import registry

__all__ = ["NOISE", "uci_model", "num_epochs_for", "method_for", "evaluate",
           "select_and_evaluate", "grid_points", "summarise"]

# How a method's observation noise is modelled (``config.<method>.noise``).
NOISE = ("learned", "fixed", "heteroscedastic")


def uci_model(config: ml_collections.ConfigDict, method: str
              ) -> posterior.Model:
  """1-hidden-layer ReLU MLP, Gaussian prior of scale ``hp["prior_scale"]``
  and the method's noise model (``config.<method>.noise``, default learned)."""
  mc = registry.method_config(method, config)
  noise = mc.get("noise", "learned")
  if noise not in NOISE:
    raise ValueError(f"{method}.noise must be one of {list(NOISE)}, got "
                     f"{noise!r}")
  min_scale = float(mc.get("noise_min_scale", 1e-3))
  if noise == "heteroscedastic":
    lik = lambda hp: likelihoods.heteroscedastic_gaussian(min_scale)
  elif noise == "fixed":
    lik = lambda hp: likelihoods.gaussian(hp["noise_scale"])
  else:
    init = float(mc.get("noise_init_scale", 0.5))
    lik = lambda hp: likelihoods.gaussian(None, init_scale=init,
                                          min_scale=min_scale)
  k = 2 if noise == "heteroscedastic" else 1
  return posterior.mlp_model((int(mc.hidden),), k, lik,
                             lambda hp: priors.gaussian(hp["prior_scale"]))


def num_epochs_for(num_train: int, batch_size: int, num_steps: int,
                   min_epochs: int, max_epochs: int) -> int:
  """``clip(ceil(num_steps / batches per epoch), min_epochs, max_epochs)``."""
  per_epoch = train.num_batches(num_train, min(batch_size, num_train))
  return int(min(max(math.ceil(num_steps / per_epoch), min_epochs), max_epochs))


def method_for(name: str, config, num_train: int):
  """``(Posterior, num_epochs)`` of ``name`` for ``num_train`` fitting rows."""
  mc = registry.method_config(name, config)
  with mc.unlocked():
    mc.num_epochs = num_epochs_for(num_train, mc.batch_size, mc.num_steps,
                                   mc.min_epochs, mc.max_epochs)
  return registry.METHODS[name](uci_model(config, name), mc), mc.num_epochs


def _num_valid(n: int, fraction: float) -> int:
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"valid_fraction must be in [0, 1), got {fraction}")
  return int(round(n * fraction)) if fraction > 0 else 0


def _score_fn(name: str, config, n: int, key):
  """``one(x_tr, y_tr, x_te, y_te, split_id, hp) -> scores`` (vmappable).

  Trains ``name`` on ``(x_tr, y_tr)`` (minus the method's own early-stopping
  part) with key ``fold_in(key, split_id)``; scores in standardised units.
  """
  probe, _ = method_for(name, config, n)
  n_val = _num_valid(n, probe.valid_fraction)
  method, epochs = method_for(name, config, n - n_val)

  def one(x_tr, y_tr, x_te, y_te, sid, hp):
    k_perm, k_fit, k_pred = jax.random.split(jax.random.fold_in(key, sid), 3)
    valid = None
    if n_val:
      perm = jax.random.permutation(k_perm, n)
      valid = {"x": x_tr[perm[:n_val]], "y": y_tr[perm[:n_val]]}
      x_tr, y_tr = x_tr[perm[n_val:]], y_tr[perm[n_val:]]
    state, hist = method.fit(k_fit, {"x": x_tr, "y": y_tr}, hp, valid)
    pred = method.predict(state, x_te, k_pred, hp)
    summary = likelihoods.mixture_summary(pred)
    # Samplers have no loss curve: NaN first / final loss.
    hl = hist.get("loss", jnp.full((1,), jnp.nan))
    loss = jnp.reshape(hl, (-1, hl.shape[-1]))
    loss = jnp.nanmean(loss, axis=0)
    last = loss.shape[0] - 1 - jnp.argmax(jnp.isfinite(loss)[::-1])
    return {"rmse_std": metrics.rmse(y_te, summary["mean"]),
            "ll_std": jnp.mean(likelihoods.mixture_log_prob(pred, y_te)),
            "final_loss": loss[last], "first_loss": loss[0]}

  return one, n_val, epochs


def _hparams(name: str, config, k: int, values: Optional[dict]) -> dict:
  hp = registry.default_hparams(name, config, None)
  for f, v in (values or {}).items():
    registry.default_hparams(name, config, {f: v})  # validates the field
    hp[f] = v
  return {f: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (k,))
          for f, v in hp.items()}


def evaluate(name: str, splits: data_lib.UCISplit, config, key,
             split_ids: Optional[np.ndarray] = None,
             hparams: Optional[dict] = None) -> dict:
  """Trains and scores ``name`` on every stacked split as one program.

  Returns ``rmse [K]``, ``ll [K]`` (original units), losses, ``num_epochs``,
  ``seconds`` (wall time including compilation).
  """
  k_splits, n, _ = splits.x_train.shape
  data_lib.check_finite("x_train", splits.x_train)
  data_lib.check_finite("y_train", splits.y_train)
  split_ids = np.arange(k_splits) if split_ids is None else np.asarray(split_ids)
  one, n_val, epochs = _score_fn(name, config, n, key)
  t0 = time.time()
  res = jax.jit(jax.vmap(one))(splits.x_train, splits.y_train, splits.x_test,
                               splits.y_test, jnp.asarray(split_ids),
                               _hparams(name, config, k_splits, hparams))
  res = jax.tree_util.tree_map(np.asarray, res)
  y_std = np.asarray(splits.y_std, np.float64)
  return {"rmse": res["rmse_std"].astype(np.float64) * y_std,
          "ll": res["ll_std"].astype(np.float64) - np.log(y_std),
          "first_loss": res["first_loss"], "final_loss": res["final_loss"],
          "num_epochs": epochs, "num_train_fit": n - n_val,
          "seconds": time.time() - t0}


def grid_points(grid: dict) -> dict:
  """Cartesian product of ``{field: [values]}`` as ``{field: [G]}`` (fields
  sorted, the last varying fastest); ``{}`` is one point of no overrides."""
  if not grid:
    return {}
  fields = sorted(grid)
  values = []
  for f in fields:
    v = np.asarray(grid[f], np.float64).reshape(-1)
    if v.size == 0 or not np.all(np.isfinite(v)):
      raise ValueError(f"grid values of {f!r} must be a non-empty list of "
                       f"finite numbers, got {grid[f]!r}")
    values.append(v)
  mesh = np.meshgrid(*values, indexing="ij")
  return {f: m.reshape(-1).astype(np.float32) for f, m in zip(fields, mesh)}


def select_and_evaluate(name: str, splits: data_lib.UCISplit, config, key,
                        grid: Optional[dict] = None,
                        split_ids: Optional[np.ndarray] = None,
                        valid_fraction: float = 0.2) -> dict:
  """Per-split selection on a validation part of the TRAINING split, refit,
  one test scoring (see the module docstring).

  Returns :func:`evaluate`'s dict plus ``grid``, ``valid_ll`` / ``valid_rmse``
  ``[G, K]`` (standardised units), ``chosen`` ``[K]``, ``hparams`` (chosen
  values ``{field: [K]}``), ``valid_ll_chosen`` ``[K]`` and ``grid_seconds``.
  """
  if not 0.0 < valid_fraction < 1.0:
    raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
  points = grid_points(grid or {})
  registry.default_hparams(name, config, points)  # validates the fields
  g = len(next(iter(points.values()))) if points else 1
  k_splits, n, _ = splits.x_train.shape
  split_ids = np.arange(k_splits) if split_ids is None else np.asarray(split_ids)
  n_val = _num_valid(n, valid_fraction)
  if n_val < 1 or n - n_val < 2:
    raise ValueError(f"valid_fraction {valid_fraction} of {n} training rows "
                     "leaves no validation or no fitting rows")
  one, _, _ = _score_fn(name, config, n - n_val, key)
  base = _hparams(name, config, g, None)
  base.update({f: jnp.asarray(v) for f, v in points.items()})

  def inner(x_tr, y_tr, sid, hp):
    perm = jax.random.permutation(
        jax.random.fold_in(jax.random.fold_in(key, sid), 1), n)
    va, fi = perm[:n_val], perm[n_val:]
    return one(x_tr[fi], y_tr[fi], x_tr[va], y_tr[va], sid, hp)

  over_grid = jax.vmap(jax.vmap(inner, in_axes=(0, 0, 0, None)),
                       in_axes=(None, None, None, 0))
  t0 = time.time()
  res = jax.jit(over_grid)(splits.x_train, splits.y_train,
                           jnp.asarray(split_ids), base)
  res = jax.tree_util.tree_map(np.asarray, res)
  grid_seconds = time.time() - t0
  valid_ll, valid_rmse = res["ll_std"], res["rmse_std"]  # [G, K]
  chosen = np.argmax(np.where(np.isfinite(valid_ll), valid_ll, -np.inf), 0)
  hparams = {f: v[chosen] for f, v in points.items()}
  out = evaluate(name, splits, config, key, split_ids, hparams)
  out.update(grid=points, valid_ll=valid_ll, valid_rmse=valid_rmse,
             chosen=chosen, hparams=hparams, grid_seconds=grid_seconds,
             valid_ll_chosen=valid_ll[chosen, np.arange(k_splits)])
  return out


def summarise(result: dict) -> dict:
  """Mean and SE (std ddof 0 / sqrt(K)) of RMSE and LL, and the per-split list."""
  k = len(result["rmse"])
  se = lambda v: float(np.std(v) / math.sqrt(k))
  out = {
      "rmse_mean": float(np.mean(result["rmse"])), "rmse_se": se(result["rmse"]),
      "ll_mean": float(np.mean(result["ll"])), "ll_se": se(result["ll"]),
      "per_split": [{"rmse": float(r), "ll": float(l)}
                    for r, l in zip(result["rmse"], result["ll"])],
      "num_splits": k, "num_epochs": int(result["num_epochs"]),
      "seconds": float(result["seconds"]),
  }
  if "valid_ll_chosen" in result:
    out["valid_ll_mean"] = float(np.mean(result["valid_ll_chosen"]))
  return out
