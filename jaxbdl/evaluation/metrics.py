"""Evaluation metrics: regression (RMSE, predictive log-likelihood) and
classification (accuracy, NLL, calibration).

All functions are pure and jitted (sizes such as ``num_bins`` are static);
they take arrays of the documented shapes and broadcast explicitly (the test
suite runs with rank promotion set to ``raise``). Regression follows the UCI
benchmark protocol (Hernández-Lobato & Adams 2015; Gal & Ghahramani 2016):
models are fitted on standardised targets, then scored in original units,

  RMSE_orig = RMSE_std * y_std,
  LL_orig   = LL_std - log(y_std)   (change of variables y = y_mean + y_std z),

and a predictive built from ``S`` samples with Gaussian noise has per-point
log-likelihood ``LL_i = logsumexp_s log N(y_i; m_s, v_s) - log S``. Results
over splits are reported as mean +- std(ddof 0) / sqrt(n_splits).

Classification: accuracy, categorical NLL, and the expected calibration error
with equal-width confidence bins (Guo et al. 2017, Eq. 3; Naeini et al. 2015).

Bad input raises ``ValueError`` naming the function, the argument, the first
offending index and value: NaN/inf anywhere (a NaN would otherwise give a NaN
metric, or for ``accuracy`` an arg-max of class 0), a variance or ``y_std``
that is not > 0. These checks run eagerly on concrete arrays only; under
``jit`` / ``vmap`` (tracers) only the trace-time shape checks apply.

References:
  Hernández-Lobato & Adams (2015), Probabilistic backpropagation, ICML.
  Gal & Ghahramani (2016), Dropout as a Bayesian approximation, ICML.
  Guo, Pleiss, Sun & Weinberger (2017), On calibration of modern neural
    networks, ICML, Sec. 2.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl._gaussian import normal_log_density_var

__all__ = [
    "rmse", "rmse_original_units", "gaussian_log_density",
    "gaussian_predictive_log_likelihood", "mixture_mean_variance",
    "denormalise_log_likelihood", "accuracy", "nll",
    "predictive_probs_from_samples", "expected_calibration_error",
    "mean_and_se",
]


def _concrete(a: Any) -> bool:
  return a is not None and not isinstance(a, jax.core.Tracer)


def _first_bad(where: np.ndarray) -> str:
  idx = np.argwhere(np.atleast_1d(where))[0]
  return str([int(i) for i in idx])


def _check_finite(fn: str, **arrays: Any) -> None:
  """Raises if a concrete array holds NaN/inf (names fn, argument, index)."""
  for name, a in arrays.items():
    if not _concrete(a):
      continue
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.number):
      raise ValueError(f"{fn}: {name} must be numeric, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if np.any(bad):
      first = np.atleast_1d(arr)[tuple(np.argwhere(np.atleast_1d(bad))[0])]
      raise ValueError(f"{fn}: {name} has {int(np.sum(bad))} non-finite "
                       f"value(s), first {first} at index {_first_bad(bad)}")


def _check_positive(fn: str, name: str, a: Any) -> None:
  if not _concrete(a):
    return
  arr = np.asarray(a)
  bad = ~(arr > 0)
  if np.any(bad):
    first = np.atleast_1d(arr)[tuple(np.argwhere(np.atleast_1d(bad))[0])]
    raise ValueError(f"{fn}: {name} must be > 0, got {first} at index "
                     f"{_first_bad(bad)}")


def _checked(check):
  """Runs ``check(*args, **kwargs)`` eagerly, then the jitted function."""
  def decorate(jitted):
    @functools.wraps(jitted)
    def wrapper(*args, **kwargs):
      check(*args, **kwargs)
      return jitted(*args, **kwargs)
    return wrapper
  return decorate


def _check_rmse(y, mean):
  _check_finite("rmse", y=y, mean=mean)


def _check_rmse_original_units(y_std_units, mean_std_units, y_std):
  _check_finite("rmse_original_units", y_std_units=y_std_units,
                mean_std_units=mean_std_units, y_std=y_std)
  _check_positive("rmse_original_units", "y_std", y_std)


def _check_gaussian_log_density(y, mean, variance):
  _check_finite("gaussian_log_density", y=y, mean=mean, variance=variance)
  _check_positive("gaussian_log_density", "variance", variance)


def _check_mixture(means, variances):
  _check_finite("mixture_mean_variance", means=means, variances=variances)
  if _concrete(variances) and np.any(np.asarray(variances) < 0):
    raise ValueError("mixture_mean_variance: variances must be >= 0, got min "
                     f"{float(np.min(np.asarray(variances)))}")


def _check_denormalise(ll_std_units, y_std):
  _check_finite("denormalise_log_likelihood", ll_std_units=ll_std_units,
                y_std=y_std)
  _check_positive("denormalise_log_likelihood", "y_std", y_std)


def _check_values(fn, name, a, is_bad, requirement):
  """Finite, and no entry with ``is_bad(entry)`` (names the first one)."""
  _check_finite(fn, **{name: a})
  if _concrete(a):
    arr = np.asarray(a)
    bad = is_bad(arr)
    if np.any(bad):
      raise ValueError(f"{fn}: {name} must be {requirement}, got "
                       f"{np.atleast_1d(arr)[np.atleast_1d(bad)][0]} at index "
                       f"{_first_bad(bad)}")


def _check_labels(fn, labels):
  _check_values(fn, "labels", labels, lambda a: a != np.round(a), "integers")


def _check_accuracy(labels, logits_or_probs):
  _check_labels("accuracy", labels)
  _check_finite("accuracy", logits_or_probs=logits_or_probs)


def _check_probs(fn, probs):
  _check_values(fn, "probs", probs, lambda a: (a < 0) | (a > 1), "in [0, 1]")


def _check_nll(labels, probs):
  _check_labels("nll", labels)
  _check_probs("nll", probs)


def _check_predictive_probs(logits):
  _check_finite("predictive_probs_from_samples", logits=logits)


def _check_ece(labels, probs, num_bins=10):
  del num_bins
  _check_labels("expected_calibration_error", labels)
  _check_probs("expected_calibration_error", probs)


def _check_mean_and_se(values, axis=0):
  del axis
  _check_finite("mean_and_se", values=values)


@_checked(_check_rmse)
@jax.jit
def rmse(y: jax.Array, mean: jax.Array) -> jax.Array:
  """Root mean squared error ``sqrt(mean_i (y_i - mean_i)^2)``.

  Args:
    y: ``[N]`` targets.
    mean: ``[N]`` point predictions.

  Returns:
    scalar.
  """
  y, mean = jnp.asarray(y), jnp.asarray(mean)
  if y.shape != mean.shape:
    raise ValueError(f"rmse: y {list(y.shape)} and mean {list(mean.shape)} "
                     "must have the same shape")
  return jnp.sqrt(jnp.mean(jnp.square(y - mean)))


@_checked(_check_rmse_original_units)
@jax.jit
def rmse_original_units(y_std_units: jax.Array, mean_std_units: jax.Array,
                        y_std: Any) -> jax.Array:
  """RMSE in original target units from standardised targets and predictions.

  Args:
    y_std_units: ``[N]`` standardised targets ``(y - y_mean) / y_std``.
    mean_std_units: ``[N]`` standardised predictions.
    y_std: scalar training target std used to standardise.

  Returns:
    scalar ``rmse(y_std_units, mean_std_units) * y_std``.
  """
  return rmse(y_std_units, mean_std_units) * jnp.asarray(y_std)


@_checked(_check_gaussian_log_density)
@jax.jit
def gaussian_log_density(y: jax.Array, mean: jax.Array,
                         variance: jax.Array) -> jax.Array:
  """Elementwise ``log N(y; mean, variance)`` (same shapes in and out)."""
  return normal_log_density_var(y, mean, variance)


def gaussian_predictive_log_likelihood(y: jax.Array, means: jax.Array,
                                       variances: Any) -> jax.Array:
  """Per-point log-likelihood of an equal-weight mixture of ``S`` Gaussians.

  ``LL_i = logsumexp_s log N(y_i; m_si, v_si) - log S``: the predictive of
  MC dropout, an ensemble or samples from a posterior, with Gaussian noise.
  With ``S = 1`` it is the Gaussian log-density.

  Args:
    y: ``[N]`` targets.
    means: ``[S, N]`` predictive means of the samples.
    variances: ``[S, N]`` variances (noise plus any per-sample variance), or
      anything ``jnp.broadcast_to``-able to ``[S, N]`` (a scalar, ``[S, 1]``).

  Returns:
    ``[N]`` log-likelihoods (nats per point, units of ``y``).
  """
  _check_finite("gaussian_predictive_log_likelihood", y=y, means=means,
                variances=variances)
  if not isinstance(variances, jax.core.Tracer) and not np.all(
      np.asarray(variances) > 0):
    raise ValueError("gaussian_predictive_log_likelihood: variances must be "
                     f"> 0, got min {float(np.min(np.asarray(variances)))}")
  return _gaussian_predictive_log_likelihood(y, means, variances)


@jax.jit
def _gaussian_predictive_log_likelihood(y, means, variances):
  y, means = jnp.asarray(y), jnp.asarray(means)
  if means.ndim != 2 or y.shape != means.shape[1:]:
    raise ValueError("gaussian_predictive_log_likelihood: need y [N] and "
                     f"means [S, N], got {list(y.shape)} and "
                     f"{list(means.shape)}")
  variances = jnp.broadcast_to(jnp.asarray(variances, means.dtype), means.shape)
  num_samples = means.shape[0]
  log_p = gaussian_log_density(jnp.broadcast_to(y[None, :], means.shape),
                               means, variances)
  return jax.nn.logsumexp(log_p, axis=0) - jnp.log(float(num_samples))


@_checked(_check_mixture)
@jax.jit
def mixture_mean_variance(means: jax.Array,
                          variances: Any) -> tuple[jax.Array, jax.Array]:
  """Mean and total variance of an equal-weight mixture of ``S`` Gaussians.

  ``mean = (1/S) sum_s m_s`` and ``var = (1/S) sum_s v_s + (1/S) sum_s
  (m_s - mean)^2``: aleatoric (average noise) plus epistemic (spread of the
  means) variance, as used for deep-ensemble bands (Lakshminarayanan et al.
  2017, Sec. 2.4).

  Args:
    means: ``[S, N]``.
    variances: ``[S, N]`` or broadcastable to it.

  Returns:
    ``(mean [N], variance [N])``.
  """
  means = jnp.asarray(means)
  variances = jnp.broadcast_to(jnp.asarray(variances, means.dtype), means.shape)
  mean = jnp.mean(means, axis=0)
  spread = jnp.mean(jnp.square(means - mean[None, :]), axis=0)
  return mean, jnp.mean(variances, axis=0) + spread


@_checked(_check_denormalise)
@jax.jit
def denormalise_log_likelihood(ll_std_units: jax.Array,
                               y_std: Any) -> jax.Array:
  """Log-likelihood in original units: ``ll - log(y_std)`` (the Jacobian).

  Args:
    ll_std_units: log-likelihood(s) of standardised targets, any shape.
    y_std: scalar std used to standardise the targets.
  """
  return jnp.asarray(ll_std_units) - jnp.log(jnp.asarray(y_std))


@_checked(_check_accuracy)
@jax.jit
def accuracy(labels: jax.Array, logits_or_probs: jax.Array) -> jax.Array:
  """Fraction of examples whose arg-max class equals the label.

  Args:
    labels: ``[N]`` integer classes.
    logits_or_probs: ``[N, C]`` logits or probabilities (same arg-max).

  Returns:
    scalar in ``[0, 1]``.
  """
  labels = jnp.asarray(labels)
  if labels.shape != jnp.shape(logits_or_probs)[:-1]:
    raise ValueError(f"accuracy: labels {list(labels.shape)} do not match "
                     f"logits {list(jnp.shape(logits_or_probs))} (need [N] and "
                     "[N, C])")
  pred = jnp.argmax(logits_or_probs, axis=-1)
  return jnp.mean((pred == jnp.asarray(labels)).astype(jnp.float32))


@_checked(_check_nll)
@jax.jit
def nll(labels: jax.Array, probs: jax.Array) -> jax.Array:
  """Mean categorical negative log-likelihood ``-(1/N) sum_i log p_i[y_i]``.

  Probabilities are clipped below at the dtype's smallest normal number, so a
  zero probability on the true class gives a large finite value, not inf.

  Args:
    labels: ``[N]`` integer classes.
    probs: ``[N, C]`` predictive probabilities (rows sum to 1).

  Returns:
    scalar (nats per example).
  """
  probs = jnp.asarray(probs)
  p_true = jnp.take_along_axis(probs, jnp.asarray(labels)[:, None], axis=-1)
  p_true = jnp.clip(p_true[:, 0], jnp.finfo(probs.dtype).tiny, 1.0)
  return -jnp.mean(jnp.log(p_true))


@_checked(_check_predictive_probs)
@jax.jit
def predictive_probs_from_samples(logits: jax.Array) -> jax.Array:
  """Bayesian model average ``p(c | x) = (1/S) sum_s softmax(logits_s)[c]``.

  Args:
    logits: ``[S, N, C]`` logits from ``S`` posterior samples / members.

  Returns:
    ``[N, C]`` probabilities.
  """
  return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=0)


@_checked(_check_ece)
@functools.partial(jax.jit, static_argnames="num_bins")
def expected_calibration_error(labels: jax.Array, probs: jax.Array,
                               num_bins: int = 10) -> jax.Array:
  """Expected calibration error with equal-width confidence bins.

  ``ECE = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|`` where the confidence of
  example ``i`` is ``max_c p_ic``, its prediction is the arg-max, and bin
  ``b = 1..num_bins`` holds confidences in ``((b-1)/num_bins, b/num_bins]``
  (Guo et al. 2017, Eq. 3). Empty bins contribute nothing.

  Args:
    labels: ``[N]`` integer classes.
    probs: ``[N, C]`` probabilities.
    num_bins: number of bins ``M`` (static).

  Returns:
    scalar in ``[0, 1]``.
  """
  if num_bins < 1:
    raise ValueError(f"expected_calibration_error: num_bins must be >= 1, "
                     f"got {num_bins}")
  probs = jnp.asarray(probs)
  conf = jnp.max(probs, axis=-1)
  correct = (jnp.argmax(probs, axis=-1) == jnp.asarray(labels)).astype(
      probs.dtype)
  bins = jnp.clip(jnp.ceil(conf * num_bins).astype(jnp.int32) - 1, 0,
                  num_bins - 1)
  sum_conf = jax.ops.segment_sum(conf, bins, num_segments=num_bins)
  sum_correct = jax.ops.segment_sum(correct, bins, num_segments=num_bins)
  # |B_b| / N * |acc_b - conf_b| = |sum_correct_b - sum_conf_b| / N.
  return jnp.sum(jnp.abs(sum_correct - sum_conf)) / conf.shape[0]


@_checked(_check_mean_and_se)
@functools.partial(jax.jit, static_argnames="axis")
def mean_and_se(values: jax.Array, axis: int = 0) -> tuple[jax.Array,
                                                           jax.Array]:
  """Mean and standard error ``std(ddof 0) / sqrt(n)`` (UCI protocol).

  Args:
    values: ``[n, ...]``, e.g. one value per split.
    axis: the axis to reduce.

  Returns:
    ``(mean, se)`` with ``axis`` removed.
  """
  values = jnp.asarray(values)
  n = values.shape[axis]
  if n == 0:
    raise ValueError(f"mean_and_se: values are empty along axis {axis} "
                     f"(shape {list(values.shape)})")
  return (jnp.mean(values, axis=axis),
          jnp.std(values, axis=axis) / jnp.sqrt(float(n)))
