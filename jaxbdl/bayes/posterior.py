"""The ONE interface of a posterior approximation, and what methods share.

Every inference method of jaxbdl (MAP, MFVI, MC dropout, ensembles, Laplace,
samplers, ...) is a factory ``make(model, config) -> Posterior``:

* :class:`Model` says what the network and the probabilistic model are: a
  Flax module, a likelihood and a prior (each built from the hyper-parameters
  ``hp``, so their values can be traced and vmapped);
* :class:`Posterior` is a NamedTuple of pure functions,
  ``fit(key, data, hp, valid) -> (state, history)`` and
  ``predict(state, x, key, hp) -> components``, vmappable over keys, data
  splits, ensemble members and hyper-parameters (``jax.vmap(fit)`` over 20
  UCI splits is one program).

The predictive is an equal-weight mixture over a leading sample axis ``S``:
``{"mean": [S, M], "variance": [S, M]}`` (regression; observation noise
included) or ``{"probs": [S, M, C]}`` (classification), scored by
``likelihoods.mixture_log_prob`` and collapsed by
``likelihoods.mixture_summary``.

Hyper-parameters ``hp`` are an explicit dict of scalars (``learning_rate``,
``prior_scale``, ``noise_scale``, ``temperature``, ``dropout_rate``, ...), an
argument of ``fit`` and ``predict`` rather than closure constants, so a grid
over them is a ``vmap``. Static settings (epochs, batch size, sample counts)
come from the ``ml_collections.ConfigDict`` given to the factory.

Shared pieces: :func:`gradient_fit` (the MAP-style training every
gradient-trained method uses, on ``jaxbdl.training.train``'s one loop),
:func:`validation_nll` (early stopping), :func:`chunked` (bounded-memory
prediction over inputs), :func:`mlp_model`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxbdl.nn import networks
from jaxbdl.training import train
from jaxbdl.bayes import likelihoods as lik_lib
from jaxbdl.bayes import priors as prior_lib

PyTree = Any
Array = jax.Array
HParams = dict

__all__ = ["Model", "Posterior", "MethodFactory", "gradient_fit",
           "validation_nll", "chunked", "mlp_model", "point_apply",
           "check_data"]


class Model(NamedTuple):
  """What the network and the probabilistic model are.

  Attributes:
    module: a Flax Linen module, ``module.apply({"params": W}, x [N, ...])
      -> outputs [N, K]`` with ``K = likelihood.num_outputs``; stochastic
      modules (dropout) take ``train=True`` and ``rngs={"dropout": key}``.
    likelihood: ``likelihood(hp) -> Likelihood``.
    prior: ``prior(hp) -> Prior``.
  """
  module: nn.Module
  likelihood: Callable[[HParams], lik_lib.Likelihood]
  prior: Callable[[HParams], prior_lib.Prior]


class Posterior(NamedTuple):
  """A posterior approximation as pure functions.

  Attributes:
    name: registry name.
    fit: ``fit(key, data {"x": [N, ...], "y": [N]}, hp, valid or None) ->
      (state, history)``; ``state`` is whatever ``predict`` needs,
      ``history`` a dict of arrays (e.g. ``"loss" [E]``).
    predict: ``predict(state, x [M, ...], key, hp) -> components`` with a
      leading sample axis (see the module docstring).
    valid_fraction: fraction of the training data the method wants carved
      out as ``valid`` for its own early stopping (0.0: none).
  """
  name: str
  fit: Callable[..., tuple[PyTree, dict]]
  predict: Callable[[PyTree, Array, Array, HParams], dict]
  valid_fraction: float = 0.0


MethodFactory = Callable[[Model, ml_collections.ConfigDict], Posterior]


def point_apply(module: nn.Module) -> Callable[[PyTree, Array], Array]:
  """``apply(W, x)``: the deterministic network (dropout off)."""
  return lambda w, x: module.apply({"params": w}, x)


def mlp_model(hidden: tuple[int, ...], num_outputs: int, likelihood, prior,
              activation: str = "relu", **mlp_kwargs) -> Model:
  """A :class:`Model` with a ``networks.MLP`` of ``hidden`` widths and
  ``num_outputs`` outputs (the likelihood's ``num_outputs``); ``hidden =
  ()`` is a linear model (one Dense layer with bias)."""
  module = networks.MLP(tuple(int(h) for h in hidden) + (int(num_outputs),),
                        activation=activation, **mlp_kwargs)
  return Model(module, likelihood, prior)


def check_data(data: dict, what: str = "data") -> tuple[int, tuple]:
  """Returns ``(N, x.shape[1:])``; checks ``x [N, ...]`` and ``y [N]``."""
  if not isinstance(data, dict) or set(data) < {"x", "y"}:
    raise ValueError(f"{what} must be a dict with 'x' and 'y'")
  x, y = data["x"], data["y"]
  if jnp.ndim(x) < 2 or jnp.shape(y)[:1] != jnp.shape(x)[:1]:
    raise ValueError(f"{what}: need x [N, ...] and y [N], got "
                     f"{tuple(jnp.shape(x))} and {tuple(jnp.shape(y))}")
  return jnp.shape(x)[0], tuple(jnp.shape(x)[1:])


def validation_nll(predict_one: Callable[[PyTree, Array], dict]):
  """``eval_fn(params, model_state, valid)`` = mean validation predictive
  NLL (lower is better), for ``train.make_fit``'s early stopping."""

  def eval_fn(params, model_state, valid):
    del model_state
    pred = predict_one(params, valid["x"])
    return -jnp.mean(lik_lib.mixture_log_prob(pred, valid["y"]))

  return eval_fn


def gradient_fit(loss_fn, params: PyTree, config, hp: HParams, data: dict,
                 key: Array, valid: Optional[dict] = None,
                 eval_fn=None) -> tuple[PyTree, dict]:
  """Trains ``params`` with Adam(``hp["learning_rate"]``) on ``jaxbdl.training.train``.

  ``config.num_epochs`` epochs of minibatches of ``config.batch_size`` (at
  most ``N``); early stopping with ``config.patience`` epochs when ``valid``
  and ``eval_fn`` are given.

  Returns:
    ``(trained params, history)``.
  """
  n, _ = check_data(data)
  opt = optax.adam(hp["learning_rate"])
  use_valid = valid is not None and eval_fn is not None
  patience = int(config.get("patience", 0) or 0)
  fit = train.make_fit(loss_fn, opt, num_epochs=int(config.num_epochs),
                       batch_size=min(int(config.batch_size), n),
                       eval_fn=eval_fn if use_valid else None,
                       patience=patience if use_valid and patience else None)
  state, history = fit(train.init_train_state(params, opt), data, key,
                       valid if use_valid else None)
  return state.params, history


def chunked(fn: Callable[[Array], dict], x: Array,
            chunk_size: Optional[int]) -> dict:
  """``fn`` over input chunks of ``chunk_size`` rows (``lax.map``): memory is
  bounded by one chunk. ``fn(x_chunk [c, ...])`` returns arrays ``[S, c,
  ...]``; the result is concatenated along axis 1. ``None``: one call."""
  n = x.shape[0]
  if chunk_size is None or chunk_size >= n:
    return fn(x)
  c = int(chunk_size)
  pad = (-n) % c
  xp = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])], 0)
  out = jax.lax.map(fn, xp.reshape((-1, c) + x.shape[1:]))  # [n/c, S, c, ...]

  def merge(a):
    a = jnp.moveaxis(a, 0, 1)  # [S, n/c, c, ...]
    return a.reshape((a.shape[0], -1) + a.shape[3:])[:, :n]

  return jax.tree_util.tree_map(merge, out)
