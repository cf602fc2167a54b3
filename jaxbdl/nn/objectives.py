"""Training as maximum a posteriori (MAP) estimation: the negative log joint.

The lecture's probabilistic re-formulation of training: minimising

  ``L(W) = -log p(y | x, W) - log p(W) = -sum_n log p(y_n | x_n, W) - log p(W)``

is MAP estimation of the weights. A Gaussian likelihood of precision ``tau``
turns the first term into ``(tau / 2) * SSE`` and a Gaussian prior of scale
``s`` the second into weight decay ``||W||^2 / (2 s^2)`` (plus constants); a
Laplace prior gives the L1 penalty. On a minibatch of size ``B`` drawn from
``N`` examples the likelihood sum is estimated without bias by
``(N / B) * sum_{i in batch} log p(y_i | x_i, W)``.

Batches are either a mapping ``{"x": [B, ...], "y": [B, ...]}`` or a pair
``(x, y)``; both are accepted everywhere (train-loop data is any pytree with a
leading axis ``N``, so either layout slices into minibatches).

Design of the train-loop loss (:func:`make_map_loss_fn`): the network enters as
a *training apply*

  ``train_apply(params, model_state, x, key) -> (outputs, new_model_state)``

which runs the model in training mode. Adapters build it:
:func:`stateless` from a plain ``f(params, x)``, and :func:`flax_train_apply`
from a Linen module (dropout rng from ``key``; ``model_state`` such as
``{"batch_stats": ...}`` made mutable). The loss factory never branches on the
model type. :func:`scale_loss` rescales a loss (e.g. by ``1 / N`` for a
per-datum objective with the same minimiser).

References:
  Bishop (2006), Sec. 1.2.5 and Eq. 3.55; MacKay (1992); Robbins & Monro
  (1951) for the unbiased minibatch estimate.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["unpack_batch", "map_loss", "stateless", "flax_train_apply",
           "make_map_loss_fn", "scale_loss"]

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
TrainApplyFn = Callable[[PyTree, PyTree, jax.Array, jax.Array],
                        tuple[jax.Array, PyTree]]
LogLikelihood = Callable[[jax.Array, jax.Array], jax.Array]
LogPrior = Callable[[PyTree], jax.Array]


def unpack_batch(batch) -> tuple[jax.Array, jax.Array]:
  """Returns ``(x, y)`` from ``{"x": x, "y": y}`` or ``(x, y)``."""
  if isinstance(batch, Mapping):
    missing = {"x", "y"} - set(batch)
    if missing:
      raise ValueError(f"batch mapping is missing key(s) {sorted(missing)}; "
                       f"has {sorted(batch)}")
    return batch["x"], batch["y"]
  if isinstance(batch, (tuple, list)) and len(batch) == 2:
    return batch[0], batch[1]
  raise ValueError("batch must be {'x': ..., 'y': ...} or a pair (x, y), got "
                   f"{type(batch).__name__}")


def _check_num_data(num_data) -> None:
  if isinstance(num_data, (int, float)) and not num_data > 0:
    raise ValueError(f"num_data must be > 0, got {num_data!r}")


def _neg_log_joint(loglik: jax.Array, log_prior_value: jax.Array, num_data,
                   batch_size: int) -> jax.Array:
  if loglik.ndim != 1 or loglik.shape[0] != batch_size:
    raise ValueError(f"log_likelihood must return per-example values [B] = "
                     f"[{batch_size}], got shape {loglik.shape}")
  if jnp.ndim(log_prior_value) != 0:
    raise ValueError(f"log_prior must return a scalar, got shape "
                     f"{jnp.shape(log_prior_value)}")
  return -(num_data / batch_size) * jnp.sum(loglik) - log_prior_value


def map_loss(params: PyTree, batch, apply_fn: ApplyFn,
             log_likelihood: LogLikelihood, log_prior: LogPrior,
             num_data) -> jax.Array:
  """Minibatch estimate of the negative log joint ``-log p(y, W | x)``.

  ``-(N / B) * sum_{i=1}^B log p(y_i | x_i, W) - log p(W)``; with ``B = N``
  this is exactly ``-log p(y | x, W) - log p(W)``.

  Args:
    params: parameter pytree ``W``.
    batch: ``{"x": [B, ...], "y": [B, ...]}`` or ``(x, y)``.
    apply_fn: ``apply_fn(params, x) -> outputs`` (e.g. ``[B, K]``).
    log_likelihood: ``log_likelihood(y, outputs) -> [B]`` (see likelihoods).
    log_prior: ``log_prior(params) -> scalar`` (see priors).
    num_data: ``N``, the size of the full training set.

  Returns:
    Scalar loss.
  """
  _check_num_data(num_data)
  x, y = unpack_batch(batch)
  loglik = log_likelihood(y, apply_fn(params, x))
  return _neg_log_joint(loglik, log_prior(params), num_data, jnp.shape(x)[0])


def stateless(apply_fn: ApplyFn) -> TrainApplyFn:
  """Adapts ``f(params, x)`` to ``train_apply(params, model_state, x, key)``."""
  def train_apply(params, model_state, x, key):
    del key
    return apply_fn(params, x), model_state
  return train_apply


def flax_train_apply(module: nn.Module, rng_name: str = "dropout") -> TrainApplyFn:
  """Training-mode apply of a Linen module taking ``train=True``.

  ``params`` is the ``"params"`` collection; ``model_state`` holds the other
  collections (e.g. ``{"batch_stats": ...}``; ``{}`` for none), all made
  mutable and returned updated. ``key`` becomes the ``rng_name`` stream.
  """
  def train_apply(params, model_state, x, key):
    variables = {"params": params, **model_state}
    rngs = {rng_name: key}
    if model_state:
      out, new_state = module.apply(variables, x, train=True, rngs=rngs,
                                    mutable=list(model_state.keys()))
      return out, dict(new_state)
    return module.apply(variables, x, train=True, rngs=rngs), model_state
  return train_apply


def make_map_loss_fn(train_apply: TrainApplyFn, log_likelihood: LogLikelihood,
                     log_prior: LogPrior, num_data):
  """Negative log joint as a train-loop loss (``jaxbdl.training.train`` contract).

  Args:
    train_apply: ``(params, model_state, x, key) -> (outputs, new_model_state)``;
      build it with :func:`stateless` or :func:`flax_train_apply`.
    log_likelihood: ``(y, outputs) -> [B]``.
    log_prior: ``params -> scalar``.
    num_data: ``N``, size of the full training set.

  Returns:
    ``loss_fn(params, model_state, batch, key) -> (loss, (model_state,
    metrics))`` with ``metrics = {"loss", "nll", "neg_log_prior"}``, where
    ``nll`` is the batch MEAN per-example negative log likelihood.
  """
  _check_num_data(num_data)

  def loss_fn(params, model_state, batch, key):
    x, y = unpack_batch(batch)
    outputs, new_state = train_apply(params, model_state, x, key)
    loglik = log_likelihood(y, outputs)
    lp = log_prior(params)
    loss = _neg_log_joint(loglik, lp, num_data, jnp.shape(x)[0])
    metrics = {"loss": loss, "nll": -jnp.mean(loglik), "neg_log_prior": -lp}
    return loss, (new_state, metrics)

  return loss_fn


def scale_loss(loss_fn, factor):
  """Returns ``loss_fn`` with its loss (and metric ``"loss"``) times ``factor``.

  ``scale_loss(loss_fn, 1 / N)`` gives the per-datum objective (mean NLL plus
  prior / N) with the same minimiser, often easier for a learning rate.
  """
  def scaled(params, model_state, batch, key):
    loss, (state, metrics) = loss_fn(params, model_state, batch, key)
    metrics = dict(metrics)
    metrics["loss"] = factor * loss
    return factor * loss, (state, metrics)
  return scaled
