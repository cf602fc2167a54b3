"""The UCI regression benchmark protocol: methods, training vmapped over splits.

Protocol (Hernández-Lobato & Adams 2015; Gal & Ghahramani 2016): on each of
the standard splits, fit on the standardised training split, predict the test
split with a Gaussian (mixture) predictive, and score test RMSE and test
log-likelihood in ORIGINAL units (``metrics.denormalise_log_likelihood``);
report mean and standard error ``std(ddof 0) / sqrt(n_splits)`` over splits.

All splits of a data set have equal sizes, so :func:`evaluate` trains every
split (and every ensemble member) as ONE ``jax.jit(jax.vmap(...))`` program on
``data.uci_stacked_splits``. Split ``k`` uses key ``fold_in(key, k)``, so a
vmapped run gives the same numbers as training split ``k`` alone.

Methods (registry :data:`METHODS`, built by :func:`build_method` from a
``ConfigDict`` like :func:`default_config`), all with a 1-hidden-layer ReLU
MLP, Adam and learned observation noise (a point estimate, so no noise grid):

* ``map``: weight decay (Gaussian prior) and early stopping on a validation
  part carved from the training split (``objectives.make_map_loss_fn``).
* ``mc_dropout``: dropout kept on at test time, ``T`` passes (Gal & Ghahramani
  2016; ``jaxbdl.mc_dropout``).
* ``mfvi``: mean-field Gaussian VI over the MLP weights (``jaxbdl.vi``,
  pathwise gradients, closed-form KL).
* ``mfvi_lrt`` / ``mfvi_flipout``: the same posterior with the local
  reparameterisation trick / Flipout (``jaxbdl.bayesian_layers``).
* ``ensemble``: deep ensemble of heteroscedastic members
  (``jaxbdl.ensembles``), mixture predictive.

A method is a :class:`Method` of two pure functions, ``train(data, key,
valid) -> (params, history)`` and ``predict(params, x, key) -> (means [S, N],
variances [S, N])`` in standardised units; adding one is adding a builder to
:data:`METHODS`.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxbdl import bayesian_layers
from jaxbdl import data as data_lib
from jaxbdl import ensembles
from jaxbdl import likelihoods
from jaxbdl import mc_dropout
from jaxbdl import metrics
from jaxbdl import networks
from jaxbdl import objectives
from jaxbdl import priors
from jaxbdl import train
from jaxbdl import vi

PyTree = Any
Array = jax.Array

__all__ = ["Method", "METHODS", "TUNABLE", "default_config", "build_method",
           "method_hparams", "num_epochs_for", "evaluate", "grid_points",
           "grid_search", "summarise", "check_method_names"]


class Method(NamedTuple):
  """A UCI method as pure functions (vmappable over splits).

  Attributes:
    name: registry name.
    train: ``train(data, key, valid) -> (params, history)`` with ``data`` and
      ``valid`` dicts ``{"x": [N, D], "y": [N]}`` (``valid`` is ``None`` when
      the method uses no validation part).
    predict: ``predict(params, x [N, D], key) -> (means [S, N], variances [S,
      N])``: the Gaussian components of the predictive (standardised units).
    valid_fraction: fraction of the training split held out for early
      stopping (0: none).
  """
  name: str
  train: Callable[..., tuple[PyTree, dict]]
  predict: Callable[[PyTree, Array, Array], tuple[Array, Array]]
  valid_fraction: float


def default_config() -> ml_collections.ConfigDict:
  """Shared and per-method hyper-parameters (standardised data units).

  ``num_epochs`` per data set is ``num_epochs_for(n_train, batch_size,
  num_steps, min_epochs, max_epochs)``: about ``num_steps`` optimiser steps,
  at least ``min_epochs`` (the PBP protocol's 40) and at most ``max_epochs``.
  """
  c = ml_collections.ConfigDict()
  c.hidden = 50
  c.batch_size = 32
  c.learning_rate = 1e-3
  c.num_steps = 40000
  c.min_epochs = 40
  c.max_epochs = 4000
  c.num_predict_samples = 100
  # MC-dropout passes evaluated at once (memory ~ batch x N x hidden per run).
  c.predict_batch_size = 100
  c.noise_init_scale = 0.5
  c.noise_min_scale = 1e-3
  # noise: "learned" (a point estimate) or "fixed" at noise_scale (standardised
  # units; Gal & Ghahramani's tau = 1 / noise_scale^2, meant to be chosen by
  # grid_search on validation data).
  c.map = ml_collections.ConfigDict(dict(
      prior_scale=1.0, valid_fraction=0.1, patience=100, noise="learned",
      noise_scale=0.5))
  c.mc_dropout = ml_collections.ConfigDict(dict(
      dropout_rate=0.05, prior_scale=1.0, valid_fraction=0.0, patience=0,
      noise="learned", noise_scale=0.5, dropout_inputs=False))
  c.mfvi = ml_collections.ConfigDict(dict(
      prior="gaussian", prior_scale=1.0, init_scale=1e-3, num_train_samples=1,
      valid_fraction=0.0, patience=0))
  c.mfvi_lrt = ml_collections.ConfigDict(dict(
      prior="gaussian", prior_scale=1.0, init_scale=1e-3, num_train_samples=1,
      valid_fraction=0.0, patience=0))
  c.mfvi_flipout = ml_collections.ConfigDict(dict(
      prior="gaussian", prior_scale=1.0, init_scale=1e-3, num_train_samples=1,
      valid_fraction=0.0, patience=0))
  c.ensemble = ml_collections.ConfigDict(dict(
      num_members=5, prior_scale=1.0, heteroscedastic=True, valid_fraction=0.0,
      patience=0))
  return c


def num_epochs_for(num_train: int, batch_size: int, num_steps: int,
                   min_epochs: int, max_epochs: int) -> int:
  """``clip(ceil(num_steps / (num_train // batch_size)), min_epochs, max_epochs)``."""
  per_epoch = train.num_batches(num_train, batch_size)
  return int(min(max(math.ceil(num_steps / per_epoch), min_epochs), max_epochs))


# ---------------------------------------------------------------------------
# Builders.


def _fit_fn(loss_fn, config, num_train: int, mcfg, hp, eval_fn=None):
  patience = int(mcfg.patience) if mcfg.valid_fraction > 0 and mcfg.patience else None
  epochs = num_epochs_for(num_train, config.batch_size, config.num_steps,
                          config.min_epochs, config.max_epochs)
  opt = optax.adam(hp["learning_rate"])
  fit = train.make_fit(loss_fn, opt, num_epochs=epochs,
                       batch_size=config.batch_size,
                       eval_fn=eval_fn if mcfg.valid_fraction > 0 else None,
                       patience=patience)
  return opt, fit


def _make_prior(mcfg, hp) -> vi.Prior:
  if mcfg.prior == "gaussian":
    return vi.gaussian_prior(hp["prior_scale"])
  if not isinstance(hp["prior_scale"], (int, float)):
    raise ValueError(f"a grid over prior_scale needs prior='gaussian', got "
                     f"prior={mcfg.prior!r}")
  if mcfg.prior == "learned_gaussian":
    return vi.learned_gaussian_prior(hp["prior_scale"])
  if mcfg.prior == "laplace":
    return vi.laplace_prior(hp["prior_scale"])
  raise ValueError(f"unknown prior {mcfg.prior!r}; valid: ['gaussian', "
                   "'learned_gaussian', 'laplace']")


def _nll_eval(predict_fn):
  """Validation metric: mean predictive NLL (lower is better)."""
  def eval_fn(params, model_state, valid):
    del model_state
    means, variances = predict_fn(params, valid["x"], jax.random.key(0))
    return -jnp.mean(metrics.gaussian_predictive_log_likelihood(
        valid["y"], means, variances))
  return eval_fn


def _point_network(name: str, config, mcfg, hp, num_train: int,
                   input_dim: int, dropout_rate, heteroscedastic: bool,
                   num_predict: int):
  """MAP-style network with Gaussian noise; used by map, mc_dropout, ensemble.

  Params ``{"net": MLP params, "raw_noise": []}``. The noise standard
  deviation is ``softplus(raw) + min_scale``: ``raw`` is a network output
  (heteroscedastic), the learned scalar ``raw_noise`` (``mcfg.noise ==
  "learned"``), or the constant that gives ``hp["noise_scale"]``
  (``mcfg.noise == "fixed"``: Gal & Ghahramani's fixed model precision
  ``tau = 1 / noise_scale^2``, chosen on validation data). The homoscedastic
  raw scale is appended as an extra output column so the loss is
  ``likelihoods.heteroscedastic_gaussian`` in every case.
  """
  module = networks.MLP((config.hidden, 2 if heteroscedastic else 1),
                        dropout_rate=dropout_rate,
                        dropout_inputs=hp.get("dropout_inputs", False))
  net_apply = objectives.flax_train_apply(module)
  min_scale = hp["noise_min_scale"]
  noise = vi.heteroscedastic_gaussian_noise(min_scale)
  noise_kind = mcfg.get("noise", "learned")
  if noise_kind not in ("learned", "fixed"):
    raise ValueError(f"{name}.noise must be 'learned' or 'fixed', got "
                     f"{noise_kind!r}")
  if noise_kind == "fixed" and heteroscedastic:
    raise ValueError(f"{name}: noise='fixed' needs heteroscedastic=False")
  if noise_kind == "fixed":
    if isinstance(hp["noise_scale"], (int, float)) and not (
        hp["noise_scale"] > min_scale):
      raise ValueError(f"{name}.noise_scale must exceed noise_min_scale, got "
                       f"{hp['noise_scale']} <= {min_scale}")
    fixed_raw = vi.softplus_inverse(jnp.asarray(hp["noise_scale"]) - min_scale)

  def pack(params, out):
    if heteroscedastic:
      return out
    raw = fixed_raw if noise_kind == "fixed" else params["raw_noise"]
    raw = jnp.broadcast_to(jnp.reshape(raw, (1, 1)), (out.shape[0], 1))
    return jnp.concatenate([out, raw], axis=1)

  def train_apply(params, model_state, x, key):
    out, state = net_apply(params["net"], model_state, x, key)
    return pack(params, out), state

  def log_lik(y, outputs):
    return likelihoods.heteroscedastic_gaussian(y, outputs, min_scale)

  log_prior = lambda p: priors.gaussian(p["net"], hp["prior_scale"])
  loss_fn = objectives.scale_loss(
      objectives.make_map_loss_fn(train_apply, log_lik, log_prior, num_train),
      1.0 / num_train)

  def det_apply(params, x):
    return pack(params, module.apply({"params": params["net"]}, x))

  def predict(params, x, key):
    if name == "mc_dropout":
      outs = mc_dropout.predict(
          lambda p, xx, k: pack(p, module.apply({"params": p["net"]}, xx,
                                                 train=True,
                                                 rngs={"dropout": k})),
          params, x, key, num_predict, config.get("predict_batch_size"))
    else:
      outs = det_apply(params, x)[None]
    return noise.moments({}, outs)

  def init(key):
    net = module.init(key, jnp.zeros((1, input_dim), jnp.float32))["params"]
    raw = vi.softplus_inverse(config.noise_init_scale - min_scale)
    if noise_kind == "fixed":  # unused (zero gradient); kept for one layout
      raw = jnp.zeros((), jnp.float32)
    return {"net": net, "raw_noise": raw}

  eval_fn = _nll_eval(lambda p, x, k: noise.moments({}, det_apply(p, x)[None]))
  opt, fit = _fit_fn(loss_fn, config, num_train, mcfg, hp, eval_fn)
  return init, opt, fit, predict


def _single_network_method(name, config, num_train, input_dim, hp,
                           dropout_rate, num_predict) -> Method:
  """map / mc_dropout: one homoscedastic point network, trained once."""
  mcfg = config[name]
  init, opt, fit, predict = _point_network(name, config, mcfg, hp, num_train,
                                           input_dim, dropout_rate, False,
                                           num_predict)

  def train_fn(data, key, valid=None):
    k1, k2 = jax.random.split(key)
    state, hist = fit(train.init_train_state(init(k1), opt), data, k2, valid)
    return state.params, hist

  return Method(name, train_fn, predict, float(mcfg.valid_fraction))


def _build_map(config, num_train, input_dim, hp):
  return _single_network_method("map", config, num_train, input_dim, hp, 0.0, 1)


def _build_mc_dropout(config, num_train, input_dim, hp):
  return _single_network_method("mc_dropout", config, num_train, input_dim, hp,
                                hp["dropout_rate"],
                                int(config.num_predict_samples))


def _build_ensemble(config, num_train, input_dim, hp):
  mcfg = config.ensemble
  init, opt, fit, predict_one = _point_network(
      "ensemble", config, mcfg, hp, num_train, input_dim, 0.0,
      bool(mcfg.heteroscedastic), 1)
  m = int(mcfg.num_members)
  efit = ensembles.make_ensemble_fit(fit, m)

  def train_fn(data, key, valid=None):
    k1, k2 = jax.random.split(key)
    states = ensembles.init_members(
        lambda k: train.init_train_state(init(k), opt), k1, m)
    states, hist = efit(states, data, k2, valid)
    return states.params, hist

  def predict(params, x, key):
    means, variances = jax.vmap(lambda p: predict_one(p, x, key))(params)
    return means[:, 0], variances[:, 0]  # [M, 1, N] -> [M, N]

  return Method("ensemble", train_fn, predict, float(mcfg.valid_fraction))


def _build_mfvi(config, num_train, input_dim, hp):
  mcfg = config.mfvi
  module = networks.MLP((config.hidden, 1))
  apply_fn = lambda w, x: module.apply({"params": w}, x)
  prior = _make_prior(mcfg, hp)
  noise = vi.learned_gaussian_noise(config.noise_init_scale,
                                    config.noise_min_scale)
  loss_fn = vi.make_elbo_loss_fn(apply_fn, noise.log_likelihood, prior,
                                 num_train, int(mcfg.num_train_samples))
  s = int(config.num_predict_samples)

  def predict(params, x, key):
    return vi.predict_moments(params, apply_fn, noise, x, key, s)

  eval_fn = _nll_eval(lambda p, x, k: vi.predict_moments(p, apply_fn, noise, x,
                                                         k, 10))
  opt, fit = _fit_fn(loss_fn, config, num_train, mcfg, hp, eval_fn)

  def train_fn(data, key, valid=None):
    k1, k2 = jax.random.split(key)
    w = module.init(k1, jnp.zeros((1, input_dim), jnp.float32))["params"]
    params = vi.init_elbo_params(w, prior, noise, hp["init_scale"])
    state, hist = fit(train.init_train_state(params, opt), data, k2, valid)
    return state.params, hist

  return Method("mfvi", train_fn, predict, float(mcfg.valid_fraction))


def _layer_builder(layer: str, name: str):
  def build(config, num_train, input_dim, hp):
    mcfg = config[name]
    model = bayesian_layers.BayesianMLP((config.hidden, 1), layer=layer,
                                        init_scale=float(mcfg.init_scale))
    prior = _make_prior(mcfg, hp)
    noise = vi.learned_gaussian_noise(config.noise_init_scale,
                                      config.noise_min_scale)
    loss_fn = bayesian_layers.make_elbo_loss_fn(
        model, noise.log_likelihood, prior, num_train,
        int(mcfg.num_train_samples))
    s = int(config.num_predict_samples)

    def predict(params, x, key):
      return bayesian_layers.predict_moments(model, params, noise, x, key, s)

    eval_fn = _nll_eval(lambda p, x, k: bayesian_layers.predict_moments(
        model, p, noise, x, k, 10))
    opt, fit = _fit_fn(loss_fn, config, num_train, mcfg, hp, eval_fn)

    def train_fn(data, key, valid=None):
      k1, k2 = jax.random.split(key)
      params = bayesian_layers.init_elbo_params(
          model, k1, jnp.zeros((1, input_dim), jnp.float32), prior, noise)
      state, hist = fit(train.init_train_state(params, opt), data, k2, valid)
      return state.params, hist

    return Method(name, train_fn, predict, float(mcfg.valid_fraction))
  return build


METHODS: dict[str, Callable[..., Method]] = {
    "map": _build_map,
    "mc_dropout": _build_mc_dropout,
    "mfvi": _build_mfvi,
    "mfvi_lrt": _layer_builder("lrt", "mfvi_lrt"),
    "mfvi_flipout": _layer_builder("flipout", "mfvi_flipout"),
    "ensemble": _build_ensemble,
}


def check_method_names(names) -> list[str]:
  """Validates method names; ``"all"`` expands to every registered method."""
  names = [names] if isinstance(names, str) else list(names)
  if names == ["all"]:
    return list(METHODS)
  unknown = [n for n in names if n not in METHODS]
  if unknown or not names:
    raise ValueError(f"unknown method(s) {unknown or names}; valid: "
                     f"{sorted(METHODS)} or 'all'")
  return names


# Hyper-parameters that may be traced, so that a grid over them is one vmapped
# program (:func:`grid_search`). ``learning_rate`` is ``config.learning_rate``
# unless the method's sub-config overrides it.
TUNABLE: dict[str, tuple[str, ...]] = {
    "map": ("learning_rate", "prior_scale", "noise_min_scale", "noise_scale"),
    "mc_dropout": ("learning_rate", "prior_scale", "noise_min_scale",
                   "noise_scale", "dropout_rate", "dropout_inputs"),
    "mfvi": ("learning_rate", "prior_scale", "init_scale"),
    "mfvi_lrt": ("learning_rate", "prior_scale"),
    "mfvi_flipout": ("learning_rate", "prior_scale"),
    "ensemble": ("learning_rate", "prior_scale", "noise_min_scale"),
}


def method_hparams(name: str, config: ml_collections.ConfigDict,
                   overrides: Optional[dict] = None) -> dict:
  """The tunable hyper-parameters of ``name`` (:data:`TUNABLE`) from ``config``.

  Args:
    overrides: ``{field: value}``; values may be traced scalars (a vmapped
      grid). An unknown field raises ``ValueError`` naming the valid ones.
  """
  check_method_names([name])
  mcfg = config[name]
  hp = {f: (mcfg[f] if f in mcfg else config[f]) for f in TUNABLE[name]}
  for f, v in (overrides or {}).items():
    if f not in hp:
      raise ValueError(f"{f!r} is not a tunable hyper-parameter of {name!r}; "
                       f"valid: {list(TUNABLE[name])}")
    hp[f] = v
  return hp


def build_method(name: str, config: ml_collections.ConfigDict, num_train: int,
                 input_dim: int, hparams: Optional[dict] = None) -> Method:
  """Builds the registered method ``name`` for ``num_train`` fitting points.

  Args:
    hparams: overrides of the :data:`TUNABLE` hyper-parameters (floats or
      traced scalars); the rest come from ``config``.
  """
  return METHODS[name](config, num_train, input_dim,
                       method_hparams(name, config, hparams))


# ---------------------------------------------------------------------------
# Evaluation over stacked splits.


def _num_valid(n: int, fraction: float) -> int:
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"valid_fraction must be in [0, 1), got {fraction}")
  return int(round(n * fraction)) if fraction > 0 else 0


def _score_fn(name: str, config: ml_collections.ConfigDict, n: int, d: int,
              key: Array):
  """``one(x_tr, y_tr, x_te, y_te, split_id, hparams) -> scores`` (vmappable).

  Trains ``name`` on ``(x_tr, y_tr)`` (minus the method's own early-stopping
  part) with key ``fold_in(key, split_id)`` and scores the test set in
  standardised units.
  """
  n_val = _num_valid(n, float(config[name].valid_fraction))

  def one(x_tr, y_tr, x_te, y_te, sid, hparams):
    method = build_method(name, config, n - n_val, d, hparams)
    k = jax.random.fold_in(key, sid)
    k_perm, k_train, k_pred = jax.random.split(k, 3)
    valid = None
    if n_val:
      perm = jax.random.permutation(k_perm, n)
      valid = {"x": x_tr[perm[:n_val]], "y": y_tr[perm[:n_val]]}
      x_tr, y_tr = x_tr[perm[n_val:]], y_tr[perm[n_val:]]
    params, hist = method.train({"x": x_tr, "y": y_tr}, k_train, valid)
    means, variances = method.predict(params, x_te, k_pred)
    ll = jnp.mean(metrics.gaussian_predictive_log_likelihood(y_te, means,
                                                             variances))
    mean, _ = metrics.mixture_mean_variance(means, variances)
    # Epoch losses (mean over ensemble members); after early stopping the
    # frozen epochs are NaN, so "final" is the last epoch that ran.
    loss = jnp.reshape(hist["loss"], (-1, hist["loss"].shape[-1]))
    loss = jnp.nanmean(loss, axis=0)
    last = loss.shape[0] - 1 - jnp.argmax(jnp.isfinite(loss)[::-1])
    out = {"rmse_std": metrics.rmse(y_te, mean), "ll_std": ll,
           "final_loss": loss[last], "first_loss": loss[0]}
    if "best_epoch" in hist and n_val:
      out["best_epoch"] = hist["best_epoch"]
    return out

  return one, n_val


def _check_splits(splits: data_lib.UCISplit) -> None:
  data_lib.check_finite("x_train", splits.x_train)
  data_lib.check_finite("y_train", splits.y_train)


def evaluate(name: str, splits: data_lib.UCISplit,
             config: ml_collections.ConfigDict, key: Array,
             split_ids: Optional[np.ndarray] = None,
             hparams: Optional[dict] = None) -> dict:
  """Trains and scores method ``name`` on every stacked split at once.

  Args:
    name: a key of :data:`METHODS`.
    splits: ``data.uci_stacked_splits(...)``, fields ``[K, ...]``.
    config: like :func:`default_config`.
    key: PRNG key; split ``k`` uses ``fold_in(key, split_ids[k])``.
    split_ids: ``[K]`` split numbers (default ``0..K-1``).
    hparams: optional ``{field: [K] values}`` of :data:`TUNABLE`
      hyper-parameters, one value per split (e.g. chosen by
      :func:`grid_search`); the rest come from ``config``.

  Returns:
    dict with ``rmse [K]`` and ``ll [K]`` (original units, numpy),
    ``num_epochs``, ``seconds`` (wall time incl. compilation), and
    ``best_epoch [K]`` when early stopping is on.
  """
  k_splits, n, d = splits.x_train.shape
  _check_splits(splits)
  split_ids = np.arange(k_splits) if split_ids is None else np.asarray(split_ids)
  hparams = {f: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (k_splits,))
             for f, v in (hparams or {}).items()}
  method_hparams(name, config, hparams)  # validates the field names
  one, n_val = _score_fn(name, config, n, d, key)

  t0 = time.time()
  res = jax.jit(jax.vmap(one))(splits.x_train, splits.y_train, splits.x_test,
                               splits.y_test, jnp.asarray(split_ids), hparams)
  res = jax.tree_util.tree_map(np.asarray, res)
  seconds = time.time() - t0
  y_std = np.asarray(splits.y_std, np.float64)
  out = {
      "rmse": res["rmse_std"].astype(np.float64) * y_std,
      "ll": res["ll_std"].astype(np.float64) - np.log(y_std),
      "first_loss": res["first_loss"], "final_loss": res["final_loss"],
      "num_epochs": num_epochs_for(n - n_val, config.batch_size,
                                   config.num_steps, config.min_epochs,
                                   config.max_epochs),
      "num_train_fit": n - n_val, "seconds": seconds,
  }
  if "best_epoch" in res:
    out["best_epoch"] = res["best_epoch"]
  return out


def grid_points(grid: dict) -> dict:
  """Cartesian product of ``{field: [values]}`` as ``{field: [G] array}``.

  Fields are sorted by name, and the last one varies fastest.
  """
  if not grid:
    raise ValueError("empty hyper-parameter grid")
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


def grid_search(name: str, splits: data_lib.UCISplit,
                config: ml_collections.ConfigDict, key: Array, grid: dict,
                split_ids: Optional[np.ndarray] = None,
                valid_fraction: float = 0.2, criterion: str = "ll") -> dict:
  """Per-split hyper-parameter selection on a validation part, then a refit.

  The protocol of Gal & Ghahramani (2016)'s reference code: for every split,
  hold out ``valid_fraction`` of its TRAINING rows (a random permutation from
  ``fold_in(fold_in(key, split_id), 1)``), train every grid point on the rest,
  score the held-out rows, pick the grid point with the best validation
  ``criterion`` (``"ll"``: highest log-likelihood; ``"rmse"``: lowest RMSE)
  for that split, then retrain on the whole training split with the chosen
  values and score the test split (:func:`evaluate`). The test rows are never
  seen before the final scoring.

  The ``G x K`` validation runs are ONE ``jax.jit(vmap(vmap(...)))`` program
  (grid outer, splits inner), as is the refit over the ``K`` splits with their
  own chosen values.

  Args:
    name: a key of :data:`METHODS`.
    splits: ``data.uci_stacked_splits(...)``, fields ``[K, ...]``.
    config: like :func:`default_config`.
    key: PRNG key (the refit uses the same keys as :func:`evaluate`).
    grid: ``{field: [values]}`` over :data:`TUNABLE` fields of ``name``.
    split_ids: ``[K]`` split numbers (default ``0..K-1``).
    valid_fraction: held-out fraction of each training split, in (0, 1).
    criterion: ``"ll"`` or ``"rmse"``.

  Returns:
    :func:`evaluate`'s dict plus ``grid`` (``{field: [G]}``), ``valid_ll``
    and ``valid_rmse`` (``[G, K]``, standardised units), ``chosen``
    (``[K]`` grid indices), ``hparams`` (``{field: [K]}`` chosen values) and
    ``grid_seconds``.
  """
  if criterion not in ("ll", "rmse"):
    raise ValueError(f"unknown criterion {criterion!r}; valid: ['ll', 'rmse']")
  if not 0.0 < valid_fraction < 1.0:
    raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
  points = grid_points(grid)
  method_hparams(name, config, points)  # validates the field names
  k_splits, n, d = splits.x_train.shape
  _check_splits(splits)
  split_ids = np.arange(k_splits) if split_ids is None else np.asarray(split_ids)
  n_val = _num_valid(n, valid_fraction)
  if n_val < 1 or n - n_val < 2:
    raise ValueError(f"valid_fraction {valid_fraction} of {n} training rows "
                     "leaves no validation or no fitting rows")
  one, _ = _score_fn(name, config, n - n_val, d, key)

  def inner(x_tr, y_tr, sid, hp):
    perm = jax.random.permutation(
        jax.random.fold_in(jax.random.fold_in(key, sid), 1), n)
    va, fi = perm[:n_val], perm[n_val:]
    return one(x_tr[fi], y_tr[fi], x_tr[va], y_tr[va], sid, hp)

  over_splits = jax.vmap(inner, in_axes=(0, 0, 0, None))
  over_grid = jax.vmap(over_splits, in_axes=(None, None, None, 0))
  t0 = time.time()
  res = jax.jit(over_grid)(splits.x_train, splits.y_train,
                           jnp.asarray(split_ids),
                           {f: jnp.asarray(v) for f, v in points.items()})
  res = jax.tree_util.tree_map(np.asarray, res)
  grid_seconds = time.time() - t0
  valid_ll, valid_rmse = res["ll_std"], res["rmse_std"]  # [G, K]
  score = np.where(np.isfinite(valid_ll), valid_ll, -np.inf) if criterion == "ll" \
      else -np.where(np.isfinite(valid_rmse), valid_rmse, np.inf)
  chosen = np.argmax(score, axis=0)  # [K]
  hparams = {f: v[chosen] for f, v in points.items()}
  out = evaluate(name, splits, config, key, split_ids, hparams)
  out.update(grid=points, valid_ll=valid_ll, valid_rmse=valid_rmse,
             chosen=chosen, hparams=hparams, grid_seconds=grid_seconds)
  return out


def summarise(result: dict) -> dict:
  """Mean and SE (std ddof 0 / sqrt(K)) of RMSE and LL, plus the per-split list."""
  k = len(result["rmse"])
  se = lambda v: float(np.std(v) / math.sqrt(k))
  return {
      "rmse_mean": float(np.mean(result["rmse"])), "rmse_se": se(result["rmse"]),
      "ll_mean": float(np.mean(result["ll"])), "ll_se": se(result["ll"]),
      "per_split": [{"rmse": float(r), "ll": float(l)}
                    for r, l in zip(result["rmse"], result["ll"])],
      "num_splits": k, "num_epochs": int(result["num_epochs"]),
      "seconds": float(result["seconds"]),
  }
