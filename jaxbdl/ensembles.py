"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell 2017).

``M`` networks from independent random initialisations (and independent
minibatch orders) are trained with a proper scoring rule (the Gaussian NLL,
optionally heteroscedastic: outputs ``[mean, raw_scale]``) and combined as a
uniformly weighted Gaussian mixture (their Sec. 2.4):

  ``mu* = (1/M) sum_m mu_m``,
  ``sigma*^2 = (1/M) sum_m (sigma_m^2 + mu_m^2) - mu*^2``
  (mean of the variances plus the variance of the means).

The members train as ONE program: :func:`make_ensemble_fit` ``vmap``-s
``jaxbdl.train.make_fit``'s ``fit`` over per-member keys and initial states
(adversarial training, their Sec. 2.3, is not included).

References:
  B. Lakshminarayanan, A. Pritzel, C. Blundell (2017), Simple and scalable
    predictive uncertainty estimation using deep ensembles, NeurIPS.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxbdl import metrics

PyTree = Any
Array = jax.Array

__all__ = ["member_keys", "init_members", "make_ensemble_fit", "predict",
           "mixture_moments", "log_likelihood"]


def _check_members(num_members: Any) -> int:
  if isinstance(num_members, bool) or not isinstance(num_members, int) or (
      num_members < 1):
    raise ValueError(f"num_members must be a positive int, got {num_members!r}")
  return num_members


def member_keys(key: Array, num_members: int) -> Array:
  """``[M]`` keys, member ``m`` gets ``fold_in(key, m)``."""
  _check_members(num_members)
  return jax.vmap(lambda m: jax.random.fold_in(key, m))(jnp.arange(num_members))


def init_members(init_fn: Callable[[Array], PyTree], key: Array,
                 num_members: int) -> PyTree:
  """Stacked member initialisations: every leaf gets a leading ``[M]`` axis.

  Args:
    init_fn: ``init_fn(key) -> params`` (or a whole ``TrainState``).
  """
  return jax.vmap(init_fn)(member_keys(key, num_members))


def make_ensemble_fit(fit: Callable, num_members: int):
  """Vmaps a ``jaxbdl.train`` ``fit`` over ``M`` members.

  Args:
    fit: ``fit(state, train_data, key, valid_data=None) -> (state, history)``
      from ``train.make_fit``.
    num_members: ``M``.

  Returns:
    ``ensemble_fit(states, train_data, key, valid_data=None) -> (states,
    history)`` where ``states`` has a leading ``[M]`` axis, the data are
    shared, member ``m`` uses key ``fold_in(key, m)`` (its own minibatch order
    and noise), and every history entry gets a leading ``[M]`` axis.
  """
  _check_members(num_members)

  def ensemble_fit(states, train_data, key, valid_data=None):
    keys = member_keys(key, num_members)
    return jax.vmap(fit, in_axes=(0, None, 0, None))(states, train_data, keys,
                                                    valid_data)

  return ensemble_fit


def predict(apply_fn: Callable[[PyTree, Array], Array], member_params: PyTree,
            x: Array) -> Array:
  """Member outputs ``[M, N, ...]`` (vmapped over the leading member axis)."""
  return jax.vmap(lambda p: apply_fn(p, x))(member_params)


def mixture_moments(means: Array, variances: Any) -> tuple[Array, Array]:
  """Uniform Gaussian-mixture mean and variance (Sec. 2.4).

  Args:
    means: ``[M, N]`` member means.
    variances: ``[M, N]`` member noise variances (or broadcastable).

  Returns:
    ``(mean [N], variance [N])`` = (mean of means, mean of variances +
    variance of means).
  """
  return metrics.mixture_mean_variance(means, variances)


def log_likelihood(y: Array, means: Array, variances: Any) -> Array:
  """Per-point log density of the mixture ``(1/M) sum_m N(y; mu_m, s_m^2)``: ``[N]``."""
  return metrics.gaussian_predictive_log_likelihood(y, means, variances)
