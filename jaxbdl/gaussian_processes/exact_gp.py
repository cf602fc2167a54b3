"""Exact Gaussian-process regression with Cholesky solves.

The model, the formulas, padding masks and failed factorisations are
described in :mod:`jaxbdl.gaussian_processes.gp`, which re-exports everything
here and adds type-II maximum likelihood of the hyper-parameters.

References:
  Rasmussen & Williams (2006), "Gaussian Processes for Machine Learning",
  Ch. 2 (Algorithm 2.1, Eqs. 2.25-2.26, 2.30).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbdl._gaussian import LOG_2PI, normal_log_density_var

Array = jax.Array
KernelFn = Callable[[Array, Array], Array]

__all__ = [
    "GPPosterior", "fit", "predict", "check_posterior",
    "log_marginal_likelihood", "gaussian_log_pdf",
    # Shared with gp's type-II maximum likelihood.
    "is_concrete", "validate_xy", "validate_mask", "validate_positive",
    "validate_jitter", "mask_or_ones", "log_marginal_likelihood_unchecked",
]


class GPPosterior(NamedTuple):
  """Exact GP posterior given training data (arrays only; a pytree).

  Attributes:
    x_train: training inputs ``[N, D]``.
    alpha: ``(K + s2 I)^{-1} y``, ``[N]`` (0 at padded points).
    chol: lower Cholesky factor of ``K + (s2 + jitter) I``, ``[N, N]``.
    noise_variance: observation-noise variance s2 (scalar).
    mask: ``[N]``, 1 for real points and 0 for padding.
    ok: bool scalar, False when the Cholesky factorisation failed (NaN).
  """
  x_train: Array
  alpha: Array
  chol: Array
  noise_variance: Array
  mask: Array
  ok: Array


# ----------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------


def is_concrete(x: Any) -> bool:
  """False for a tracer (inside jit / vmap): value checks are skipped."""
  return not isinstance(x, jax.core.Tracer)


def validate_xy(x: Any, y: Any, name: str) -> None:
  if np.ndim(x) != 2:
    raise ValueError(f"{name}: x must be a 2-D [N, D] array, got shape "
                     f"{np.shape(x)}")
  if np.ndim(y) != 1:
    raise ValueError(f"{name}: y must be a 1-D [N] array of targets, got shape "
                     f"{np.shape(y)}")
  if np.shape(x)[0] != np.shape(y)[0]:
    raise ValueError(f"{name}: x has {np.shape(x)[0]} rows but y has "
                     f"{np.shape(y)[0]} entries")
  if np.shape(x)[0] < 1:
    raise ValueError(f"{name}: need at least one training point")
  for label, a in (("x", x), ("y", y)):
    if is_concrete(a) and not np.all(np.isfinite(np.asarray(a))):
      raise ValueError(f"{name}: {label} contains NaN or inf")


def validate_mask(mask: Any, n: int, name: str) -> None:
  if mask is None:
    return
  if np.shape(mask) != (n,):
    raise ValueError(f"{name}: mask must have shape [{n}], got "
                     f"{np.shape(mask)}")
  if is_concrete(mask) and not np.any(np.asarray(mask)):
    raise ValueError(f"{name}: mask selects no training point")


def validate_positive(value: Any, label: str, name: str) -> None:
  if np.ndim(value) != 0:
    raise ValueError(f"{name}: {label} must be a scalar, got shape "
                     f"{np.shape(value)}")
  if is_concrete(value):
    v = float(value)
    if not (math.isfinite(v) and v > 0):
      raise ValueError(f"{name}: {label} must be positive and finite, got {v}")


def validate_jitter(jitter: Any, name: str) -> None:
  if is_concrete(jitter) and not float(jitter) >= 0:
    raise ValueError(f"{name}: jitter must be >= 0, got {float(jitter)}")


_CHOLESKY_HINT = ("Cholesky of K + (noise_variance + jitter) I failed (not "
                  "positive definite): the kernel is not PSD on these inputs "
                  "or noise_variance + jitter is too small for the precision; "
                  "increase jitter or noise_variance")


def check_posterior(posterior: GPPosterior, name: str = "gp") -> GPPosterior:
  """Raises ValueError if a (concrete) posterior's Cholesky failed; returns it.

  Call at the boundary on the output of a jitted :func:`fit`.
  """
  ok = np.asarray(posterior.ok)
  if not np.all(ok):
    bad = "" if ok.ndim == 0 else f" (in {int(np.sum(~ok))} of {ok.size})"
    raise ValueError(f"{name}: {_CHOLESKY_HINT}{bad}")
  return posterior


# ----------------------------------------------------------------------------
# Exact GP.
# ----------------------------------------------------------------------------


def mask_or_ones(mask, n, dtype):
  """The padding mask ``[n]`` as ``dtype`` (all ones if ``None``)."""
  return jnp.ones((n,), dtype) if mask is None else jnp.asarray(mask, dtype)


def _cholesky(kernel_fn: KernelFn, x: Array, noise_variance: Any,
              jitter: Any, mask: Array) -> Array:
  """chol of K + (s2 + jitter) I with padded rows/columns set to the identity."""
  k = kernel_fn(x, x)
  n = x.shape[0]
  eye = jnp.eye(n, dtype=k.dtype)
  both = mask[:, None] * mask[None, :]
  a = both * (k + (noise_variance + jitter) * eye) + (1.0 - both) * eye
  return jnp.linalg.cholesky(a)


def _fit(kernel_fn, x, y, noise_variance, jitter, mask):
  chol = _cholesky(kernel_fn, x, noise_variance, jitter, mask)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  ok = jnp.all(jnp.isfinite(chol))
  return GPPosterior(x_train=x, alpha=alpha, chol=chol,
                     noise_variance=jnp.asarray(noise_variance,
                                                dtype=chol.dtype),
                     mask=mask, ok=ok)


def fit(kernel_fn: KernelFn, x_train: Array, y_train: Array,
        noise_variance: Any, jitter: float = 1e-6,
        mask: Array | None = None) -> GPPosterior:
  """Conditions a zero-mean GP on ``(x_train [N, D], y_train [N])``.

  Args:
    kernel_fn: ``(x1 [N, D], x2 [M, D]) -> [N, M]``.
    x_train: training inputs ``[N, D]``.
    y_train: training targets ``[N]`` (standardised: prior mean is zero).
    noise_variance: Gaussian observation-noise variance, > 0.
    jitter: added to the diagonal for a stable Cholesky (not part of the model
      noise; predictive variances use ``noise_variance`` only).
    mask: optional ``[N]``, 1 = real point, 0 = padding (ignored exactly).

  Returns:
    A :class:`GPPosterior` (``ok`` False if the factorisation failed under
    ``jit``; see :func:`check_posterior`).

  Raises:
    ValueError: on shape mismatches, NaN/inf data, non-positive noise, and,
      outside ``jit``, a failed Cholesky factorisation.
  """
  validate_xy(x_train, y_train, "gp.fit")
  validate_positive(noise_variance, "noise_variance", "gp.fit")
  validate_jitter(jitter, "gp.fit")
  validate_mask(mask, np.shape(x_train)[0], "gp.fit")
  x_train = jnp.asarray(x_train)
  y_train = jnp.asarray(y_train)
  mask = mask_or_ones(mask, x_train.shape[0], y_train.dtype)
  post = _fit(kernel_fn, x_train, y_train, noise_variance, jitter, mask)
  if is_concrete(post.ok):
    check_posterior(post, "gp.fit")
  return post


def _diag(kernel_fn: KernelFn, x: Array) -> Array:
  """``k(x_i, x_i)``, ``[M]``, one 1x1 kernel evaluation per row (vmapped)."""
  return jax.vmap(lambda xi: kernel_fn(xi[None, :], xi[None, :])[0, 0])(x)


def predict(kernel_fn: KernelFn, posterior: GPPosterior, x_test: Array, *,
            full_cov: bool = False, include_noise: bool = False
            ) -> tuple[Array, Array]:
  """Posterior predictive at ``x_test [M, D]`` (Rasmussen & Williams Eq. 2.25-2.26).

  Args:
    kernel_fn: the kernel used in :func:`fit`.
    posterior: from :func:`fit`.
    x_test: test inputs ``[M, D]``.
    full_cov: return the ``[M, M]`` covariance instead of the ``[M]`` variance.
    include_noise: add ``noise_variance`` (predictive of noisy y rather than
      of the latent f).

  Returns:
    ``(mean [M], var [M])`` or ``(mean [M], cov [M, M])``; variances are
    clipped at 0 against round-off.
  """
  if np.ndim(x_test) != 2 or np.shape(x_test)[1] != np.shape(
      posterior.x_train)[1]:
    raise ValueError(f"gp.predict: x_test must be [M, {np.shape(posterior.x_train)[1]}]"
                     f", got shape {np.shape(x_test)}")
  if is_concrete(x_test) and not np.all(np.isfinite(np.asarray(x_test))):
    raise ValueError("gp.predict: x_test contains NaN or inf")
  if is_concrete(posterior.ok):
    check_posterior(posterior, "gp.predict")
  x_test = jnp.asarray(x_test)
  k_xs = kernel_fn(posterior.x_train, x_test) * posterior.mask[:, None]
  mean = k_xs.T @ posterior.alpha                                  # [M]
  v = jax.scipy.linalg.solve_triangular(posterior.chol, k_xs, lower=True)
  noise = posterior.noise_variance if include_noise else 0.0
  if full_cov:
    cov = kernel_fn(x_test, x_test) - v.T @ v
    cov = cov + noise * jnp.eye(x_test.shape[0], dtype=cov.dtype)
    return mean, cov
  var = jnp.maximum(_diag(kernel_fn, x_test) - jnp.sum(v * v, axis=0), 0.0)
  return mean, var + noise


def log_marginal_likelihood(kernel_fn: KernelFn, x: Array, y: Array,
                            noise_variance: Any, jitter: float = 1e-6,
                            mask: Array | None = None) -> Array:
  """``log N(y; 0, K + (noise_variance + jitter) I)`` (R&W Eq. 2.30), a scalar.

  Args:
    kernel_fn: ``(x1, x2) -> [N, M]``.
    x: inputs ``[N, D]``.
    y: targets ``[N]``.
    noise_variance: > 0.
    jitter: diagonal jitter (included in the evaluated density).
    mask: optional ``[N]`` (1 = real point); the density of the real points.
  """
  validate_xy(x, y, "gp.log_marginal_likelihood")
  validate_positive(noise_variance, "noise_variance",
                     "gp.log_marginal_likelihood")
  validate_jitter(jitter, "gp.log_marginal_likelihood")
  validate_mask(mask, np.shape(x)[0], "gp.log_marginal_likelihood")
  y = jnp.asarray(y)
  return log_marginal_likelihood_unchecked(
      kernel_fn, jnp.asarray(x), y, noise_variance, jitter,
      mask_or_ones(mask, y.shape[0], y.dtype))


def log_marginal_likelihood_unchecked(kernel_fn, x, y, noise_variance,
                                      jitter, mask):
  """:func:`log_marginal_likelihood` without the checks (traceable)."""
  chol = _cholesky(kernel_fn, x, noise_variance, jitter, mask)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y * mask)
  return (-0.5 * jnp.dot(y * mask, alpha)
          - jnp.sum(jnp.log(jnp.diagonal(chol)))
          - 0.5 * jnp.sum(mask) * LOG_2PI)



def gaussian_log_pdf(y: Array, mean: Array, variance: Array) -> Array:
  """Per-point ``log N(y; mean, variance)``, all ``[M]`` -> ``[M]``.

  For scoring GP predictives (``include_noise=True``) as a test log-likelihood.
  """
  return normal_log_density_var(y, mean, variance)
