"""Observation models ``log p(y | f(x, W))``, returned PER EXAMPLE as ``[N]``.

The caller reduces (STYLE rule 7): a minibatch estimate of the full-data log
likelihood is ``(N / B) * sum(loglik)``, the test log-likelihood is
``mean(loglik)``, and per-example gradients come from ``vmap``/``jacrev``.

All functions are jittable; their shape checks run at trace time. Multi-output
values ``[N, K]`` are summed over the trailing axis (independent outputs). A
target ``[N]`` against a prediction ``[N, 1]`` (or the reverse) is accepted and
treated as ``K = 1``, since a 1-output network returns ``[N, 1]``.

Use :func:`check_finite` at the boundary (outside jit) on data and predictions.

References:
  Bishop, *Pattern Recognition and Machine Learning* (2006): Gaussian noise
  model Eq. 3.8 (precision ``beta``), logistic regression Eq. 4.90, softmax
  cross-entropy Eq. 4.108.
  Nix & Weigend (1994); Kendall & Gal (2017), Eq. 5: heteroscedastic regression.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def check_finite(name: str, array) -> np.ndarray:
  """Raises ValueError if ``array`` has NaN/inf; returns it as a numpy array.

  Call outside jit (it reads the values). The message names ``name``, the count
  of bad entries and the index of the first.
  """
  arr = np.asarray(array)
  if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
    raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
  if np.issubdtype(arr.dtype, np.inexact):
    bad = ~np.isfinite(arr)
    if bad.any():
      first = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) "
                       f"(NaN/inf) out of {arr.size}; first at index {first}")
  return arr


def _check_positive(name: str, value) -> None:
  if isinstance(value, (int, float)) and not value > 0:
    raise ValueError(f"{name} must be > 0, got {value!r}")


def _match(y: jax.Array, pred: jax.Array, what: str) -> tuple[jax.Array, jax.Array]:
  """Returns ``(y, pred)`` with equal shape ``[N]`` or ``[N, K]`` (trace time)."""
  y, pred = jnp.asarray(y), jnp.asarray(pred)
  if y.shape == pred.shape and y.ndim in (1, 2):
    return y, pred
  if y.ndim == 1 and pred.shape == y.shape + (1,):
    return y, pred[:, 0]
  if pred.ndim == 1 and y.shape == pred.shape + (1,):
    return y[:, 0], pred
  raise ValueError(f"{what}: targets {y.shape} and predictions {pred.shape} "
                   "must both be [N] or both [N, K]")


def _sum_trailing(x: jax.Array) -> jax.Array:
  return x if x.ndim == 1 else jnp.sum(x, axis=-1)


def gaussian(y: jax.Array, mean: jax.Array, tau) -> jax.Array:
  """``log N(y; mean, 1/tau)`` per example, summed over outputs.

  ``log p = 0.5 log(tau) - 0.5 log(2 pi) - 0.5 tau (y - mean)^2``, so that
  ``-sum_n log p = (tau / 2) * SSE + (N K / 2) log(2 pi / tau)`` (Bishop Eq. 3.11).

  Args:
    y: targets ``[N]`` or ``[N, K]``.
    mean: predictions, same shape as ``y``.
    tau: scalar noise PRECISION (inverse variance) > 0.

  Returns:
    ``[N]`` log densities.
  """
  _check_positive("tau", tau)
  y, mean = _match(y, mean, "gaussian")
  tau = jnp.asarray(tau, dtype=mean.dtype)
  if tau.ndim != 0:
    raise ValueError(f"gaussian: tau must be a scalar precision, got shape {tau.shape}")
  r = y - mean
  return _sum_trailing(0.5 * jnp.log(tau) - _HALF_LOG_2PI - 0.5 * tau * r * r)


def gaussian_scale(y: jax.Array, mean: jax.Array, scale) -> jax.Array:
  """``log N(y; mean, scale^2)`` per example, summed over outputs.

  For learned homoscedastic noise pass ``scale = softplus(raw)`` or
  ``exp(log_scale)``; ``scale`` is a STANDARD DEVIATION.

  Args:
    y: targets ``[N]`` or ``[N, K]``.
    mean: predictions, same shape as ``y``.
    scale: standard deviation > 0: a scalar, ``[K]``, or the shape of ``y``.

  Returns:
    ``[N]`` log densities.
  """
  _check_positive("scale", scale)
  y, mean = _match(y, mean, "gaussian_scale")
  scale = jnp.asarray(scale, dtype=mean.dtype)
  try:
    scale = jnp.broadcast_to(scale, mean.shape)
  except ValueError as e:
    raise ValueError(f"gaussian_scale: scale of shape {scale.shape} does not "
                     f"broadcast to predictions {mean.shape}") from e
  z = (y - mean) / scale
  return _sum_trailing(-0.5 * z * z - jnp.log(scale) - _HALF_LOG_2PI)


def heteroscedastic_gaussian(y: jax.Array, outputs: jax.Array,
                             min_scale: float = 1e-3) -> jax.Array:
  """Gaussian with input-dependent noise: ``outputs = [mean, raw_scale]``.

  ``scale = softplus(raw_scale) + min_scale`` (a standard deviation), the
  floor keeping the log density bounded (Nix & Weigend 1994; Kendall & Gal
  2017, Eq. 5).

  Args:
    y: targets ``[N]`` (then ``outputs`` is ``[N, 2]``) or ``[N, K]``.
    outputs: network outputs ``[N, 2K]``: means in ``[:, :K]``, raw scales in
      ``[:, K:]``.
    min_scale: non-negative floor on the standard deviation.

  Returns:
    ``[N]`` log densities.
  """
  if isinstance(min_scale, (int, float)) and min_scale < 0:
    raise ValueError(f"min_scale must be >= 0, got {min_scale!r}")
  y = jnp.asarray(y)
  k = 1 if y.ndim == 1 else y.shape[-1]
  if outputs.ndim != 2 or outputs.shape[-1] != 2 * k or outputs.shape[0] != y.shape[0]:
    raise ValueError(f"heteroscedastic_gaussian: outputs must be [N, 2K] = "
                     f"[{y.shape[0]}, {2 * k}] for targets {y.shape}, got "
                     f"{outputs.shape}")
  mean, raw = outputs[:, :k], outputs[:, k:]
  scale = jax.nn.softplus(raw) + min_scale
  if y.ndim == 1:
    mean, scale = mean[:, 0], scale[:, 0]
  return gaussian_scale(y, mean, scale)


def categorical(labels: jax.Array, logits: jax.Array) -> jax.Array:
  """``log softmax(logits)[label]`` per example (minus softmax cross-entropy).

  Args:
    labels: integer class indices ``[N]`` in ``[0, C)``.
    logits: unnormalised log probabilities ``[N, C]``.

  Returns:
    ``[N]`` log probabilities.
  """
  labels = jnp.asarray(labels)
  if logits.ndim != 2 or labels.shape != logits.shape[:1]:
    raise ValueError(f"categorical: labels must be [N] and logits [N, C], got "
                     f"{labels.shape} and {logits.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"categorical: labels must be integers, got {labels.dtype}")
  logp = jax.nn.log_softmax(logits, axis=-1)
  return jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def bernoulli(labels: jax.Array, logits: jax.Array) -> jax.Array:
  """``y log sigmoid(l) + (1 - y) log sigmoid(-l)`` per example, stably.

  Args:
    labels: ``{0, 1}`` targets ``[N]`` or ``[N, K]`` (any numeric dtype).
    logits: log-odds, same shape (``[N]`` vs ``[N, 1]`` accepted).

  Returns:
    ``[N]`` log probabilities (summed over ``K``).
  """
  labels, logits = _match(labels, logits, "bernoulli")
  labels = labels.astype(logits.dtype)
  return _sum_trailing(labels * jax.nn.log_sigmoid(logits)
                       + (1.0 - labels) * jax.nn.log_sigmoid(-logits))
