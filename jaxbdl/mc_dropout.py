"""Monte Carlo dropout (Gal & Ghahramani 2016): dropout as approximate inference.

A network trained with dropout and weight decay is (approximately) a
variational posterior over its weights; keeping dropout ON at test time and
averaging ``T`` stochastic passes approximates the predictive (their Eq. 7-8):

  ``E[y*] ~ (1/T) sum_t f(x*; W_t)``,
  ``Var[y*] ~ tau^{-1} + (1/T) sum_t f(x*; W_t)^2 - E[y*]^2``.

With prior length-scale ``l``, dropout (drop) probability ``p``, ``N`` training
points and model precision ``tau`` (inverse observation-noise variance), the
weight decay that matches the variational objective is (their Sec. 4 and
Appendix; Gal's thesis Eq. 3.18)

  ``lambda = (1 - p) l^2 / (2 N tau)``,   equivalently
  ``tau = (1 - p) l^2 / (2 N lambda)``.

:func:`weight_decay_from_precision` and :func:`precision_from_weight_decay`
implement the two directions; :func:`predict` runs the ``T`` passes as one
``vmap``; :func:`predictive_moments` turns per-pass outputs into the Gaussian
predictive, and :func:`log_likelihood` into the test log-likelihood
``logsumexp_t log N(y; f_t, 1/tau) - log T`` (their Eq. 8).

References:
  Y. Gal, Z. Ghahramani (2016), Dropout as a Bayesian approximation:
    representing model uncertainty in deep learning, ICML.
  Y. Gal (2016), Uncertainty in deep learning, PhD thesis, Sec. 3.2-3.3.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxbdl import metrics

PyTree = Any
Array = jax.Array

__all__ = ["weight_decay_from_precision", "precision_from_weight_decay",
           "flax_stochastic_apply", "predict", "predictive_moments",
           "log_likelihood"]


def _check(name: str, value: Any, low: float = 0.0) -> None:
  if isinstance(value, (int, float)) and not value > low:
    raise ValueError(f"{name} must be > {low}, got {value!r}")


def _check_rate(p: Any) -> None:
  if isinstance(p, (int, float)) and not 0.0 <= p < 1.0:
    raise ValueError(f"dropout_rate must be in [0, 1), got {p!r}")


def weight_decay_from_precision(tau, length_scale, dropout_rate, num_data):
  """``lambda = (1 - p) l^2 / (2 N tau)`` (Gal & Ghahramani 2016).

  ``lambda`` multiplies ``||W||^2`` in the per-datum loss
  ``(1/N) sum_n E_n + lambda ||W||^2``.

  Args:
    tau: model precision ``> 0`` (inverse noise variance).
    length_scale: prior length-scale ``l > 0``.
    dropout_rate: drop probability ``p`` in ``[0, 1)``.
    num_data: ``N > 0``.
  """
  _check("tau", tau)
  _check("length_scale", length_scale)
  _check("num_data", num_data)
  _check_rate(dropout_rate)
  return (1.0 - dropout_rate) * length_scale ** 2 / (2.0 * num_data * tau)


def precision_from_weight_decay(weight_decay, length_scale, dropout_rate,
                                num_data):
  """``tau = (1 - p) l^2 / (2 N lambda)``: the inverse of
  :func:`weight_decay_from_precision`."""
  _check("weight_decay", weight_decay)
  _check("length_scale", length_scale)
  _check("num_data", num_data)
  _check_rate(dropout_rate)
  return (1.0 - dropout_rate) * length_scale ** 2 / (2.0 * num_data
                                                     * weight_decay)


def flax_stochastic_apply(module: nn.Module, rng_name: str = "dropout"):
  """``apply(params, x, key)`` with dropout ON (``train=True``) for a Linen
  module taking ``(x, train)``, such as ``networks.MLP(dropout_rate=p)``."""

  def apply(params, x, key):
    return module.apply({"params": params}, x, train=True,
                        rngs={rng_name: key})

  return apply


def predict(stochastic_apply: Callable[[PyTree, Array, Array], Array],
            params: PyTree, x: Array, key: Array, num_samples: int,
            batch_size: Optional[int] = None) -> Array:
  """``T = num_samples`` stochastic passes: outputs ``[T, N, ...]``.

  Pass ``t`` uses dropout key ``fold_in(key, t)``.

  Args:
    batch_size: passes evaluated at once (``jax.lax.map`` over chunks), which
      bounds the memory of the hidden activations to ``batch_size x N x H``;
      ``None`` vmaps all ``T`` passes at once. The outputs are the same.
  """
  if not (isinstance(num_samples, int) and num_samples >= 1):
    raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
  if batch_size is not None and not (isinstance(batch_size, int)
                                     and batch_size >= 1):
    raise ValueError(f"batch_size must be a positive int or None, got "
                     f"{batch_size!r}")
  keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(jnp.arange(num_samples))
  one = lambda k: stochastic_apply(params, x, k)
  if batch_size is None or batch_size >= num_samples:
    return jax.vmap(one)(keys)
  return jax.lax.map(one, keys, batch_size=batch_size)


def predictive_moments(outputs: Array, tau) -> tuple[Array, Array]:
  """Predictive mean and variance from passes ``outputs [T, N]`` (Eq. 7-8):
  ``mean_t f_t`` and ``1/tau + mean_t f_t^2 - (mean_t f_t)^2``."""
  return metrics.mixture_mean_variance(outputs, 1.0 / jnp.asarray(tau))


def log_likelihood(y: Array, outputs: Array, tau) -> Array:
  """Per-point test log-likelihood ``logsumexp_t log N(y; f_t, 1/tau) - log T``.

  Args:
    y: ``[N]`` targets.
    outputs: ``[T, N]`` pass outputs.
    tau: model precision (scalar).

  Returns:
    ``[N]``.
  """
  return metrics.gaussian_predictive_log_likelihood(y, outputs,
                                                    1.0 / jnp.asarray(tau))
