"""Exact Gaussian-process regression with Cholesky solves.

Model: ``f ~ GP(0, k)``, ``y_i = f(x_i) + eps_i``, ``eps_i ~ N(0, noise_variance)``.
Prior mean zero: standardise targets first. With ``K = k(X, X) [N, N]`` and
``L = chol(K + (noise_variance + jitter) I)``:

- posterior mean      m(x*) = k(x*, X) alpha,  alpha = (K + s2 I)^{-1} y
- posterior variance  v(x*) = k(x*, x*) - ||L^{-1} k(X, x*)||^2
- log marginal likelihood
      log p(y | X) = -1/2 y^T alpha - sum_i log L_ii - N/2 log(2 pi)
  (Rasmussen & Williams 2006, Algorithm 2.1 and Eq. 2.30).

Kernels are callables. :func:`fit`, :func:`predict` and
:func:`log_marginal_likelihood` take ``kernel_fn(x1 [N, D], x2 [M, D]) -> [N, M]``
(hyper-parameters closed over, e.g. ``functools.partial``);
:func:`optimise_hyperparameters` takes a parameterised
``kernel_fn(params, x1, x2)`` such as :func:`jaxbdl.nngp.make_kernel_fn` or
:func:`jaxbdl.kernels.make_kernel_fn`, and maximises the marginal likelihood
over positive hyper-parameters (softplus-parameterised) and the noise variance
with Adam inside one jitted ``lax.scan``.

The posterior is a NamedTuple of arrays only, so it can be returned from
``jax.jit``/``jax.vmap`` (e.g. one GP per data split); the kernel is passed to
:func:`predict` again rather than stored.

References:
  Rasmussen & Williams (2006), "Gaussian Processes for Machine Learning",
  Ch. 2 (Algorithm 2.1, Eqs. 2.25-2.26, 2.30) and Ch. 5 (Eq. 5.9, gradient of
  the marginal likelihood).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
KernelFn = Callable[[Array, Array], Array]
ParamKernelFn = Callable[[Any, Array, Array], Array]

__all__ = [
    "GPPosterior", "HyperparameterFit", "fit", "predict",
    "log_marginal_likelihood", "optimise_hyperparameters", "gaussian_log_pdf",
]


class GPPosterior(NamedTuple):
  """Exact GP posterior given training data (arrays only; a pytree).

  Attributes:
    x_train: training inputs ``[N, D]``.
    alpha: ``(K + s2 I)^{-1} y``, ``[N]``.
    chol: lower Cholesky factor of ``K + (s2 + jitter) I``, ``[N, N]``.
    noise_variance: observation-noise variance s2 (scalar).
  """
  x_train: Array
  alpha: Array
  chol: Array
  noise_variance: Array


class HyperparameterFit(NamedTuple):
  """Result of :func:`optimise_hyperparameters`.

  Attributes:
    params: optimised kernel hyper-parameters (same pytree as the init).
    noise_variance: optimised noise variance (scalar).
    neg_log_marginal_likelihood: ``-log p(y | X) / N`` before each Adam step,
      ``[num_steps]`` (a learning curve; lower is better).
  """
  params: Any
  noise_variance: Array
  neg_log_marginal_likelihood: Array


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _validate_xy(x: Any, y: Any, name: str) -> None:
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
    if _is_concrete(a) and not np.all(np.isfinite(np.asarray(a))):
      raise ValueError(f"{name}: {label} contains NaN or inf")


def _validate_positive(value: Any, label: str, name: str) -> None:
  if np.ndim(value) != 0:
    raise ValueError(f"{name}: {label} must be a scalar, got shape "
                     f"{np.shape(value)}")
  if _is_concrete(value):
    v = float(value)
    if not (math.isfinite(v) and v > 0):
      raise ValueError(f"{name}: {label} must be positive and finite, got {v}")


def _validate_jitter(jitter: Any, name: str) -> None:
  if _is_concrete(jitter) and not float(jitter) >= 0:
    raise ValueError(f"{name}: jitter must be >= 0, got {float(jitter)}")


def _cholesky(kernel_fn: KernelFn, x: Array, noise_variance: Any,
              jitter: Any) -> Array:
  k = kernel_fn(x, x)
  n = x.shape[0]
  return jnp.linalg.cholesky(
      k + (noise_variance + jitter) * jnp.eye(n, dtype=k.dtype))


def fit(kernel_fn: KernelFn, x_train: Array, y_train: Array,
        noise_variance: Any, jitter: float = 1e-6) -> GPPosterior:
  """Conditions a zero-mean GP on ``(x_train [N, D], y_train [N])``.

  Args:
    kernel_fn: ``(x1 [N, D], x2 [M, D]) -> [N, M]``.
    x_train: training inputs ``[N, D]``.
    y_train: training targets ``[N]`` (standardised: prior mean is zero).
    noise_variance: Gaussian observation-noise variance, > 0.
    jitter: added to the diagonal for a stable Cholesky (not part of the model
      noise; predictive variances use ``noise_variance`` only).

  Returns:
    A :class:`GPPosterior`.

  Raises:
    ValueError: on shape mismatches, NaN/inf data, non-positive noise.
  """
  _validate_xy(x_train, y_train, "gp.fit")
  _validate_positive(noise_variance, "noise_variance", "gp.fit")
  _validate_jitter(jitter, "gp.fit")
  x_train = jnp.asarray(x_train)
  y_train = jnp.asarray(y_train)
  chol = _cholesky(kernel_fn, x_train, noise_variance, jitter)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y_train)
  return GPPosterior(x_train=x_train, alpha=alpha, chol=chol,
                     noise_variance=jnp.asarray(noise_variance,
                                                dtype=chol.dtype))


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
  if _is_concrete(x_test) and not np.all(np.isfinite(np.asarray(x_test))):
    raise ValueError("gp.predict: x_test contains NaN or inf")
  x_test = jnp.asarray(x_test)
  k_xs = kernel_fn(posterior.x_train, x_test)                      # [N, M]
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
                            noise_variance: Any, jitter: float = 1e-6
                            ) -> Array:
  """``log N(y; 0, K + (noise_variance + jitter) I)`` (R&W Eq. 2.30), a scalar.

  Args:
    kernel_fn: ``(x1, x2) -> [N, M]``.
    x: inputs ``[N, D]``.
    y: targets ``[N]``.
    noise_variance: > 0.
    jitter: diagonal jitter (included in the evaluated density).
  """
  _validate_xy(x, y, "gp.log_marginal_likelihood")
  _validate_positive(noise_variance, "noise_variance",
                     "gp.log_marginal_likelihood")
  _validate_jitter(jitter, "gp.log_marginal_likelihood")
  return _log_marginal_likelihood(kernel_fn, jnp.asarray(x), jnp.asarray(y),
                                  noise_variance, jitter)


def _log_marginal_likelihood(kernel_fn, x, y, noise_variance, jitter):
  chol = _cholesky(kernel_fn, x, noise_variance, jitter)
  alpha = jax.scipy.linalg.cho_solve((chol, True), y)
  n = y.shape[0]
  return (-0.5 * jnp.dot(y, alpha) - jnp.sum(jnp.log(jnp.diagonal(chol)))
          - 0.5 * n * math.log(2.0 * math.pi))


def _inverse_softplus(v: Array) -> Array:
  # log(exp(v) - 1) = v + log(1 - exp(-v)), stable for large v.
  return v + jnp.log(-jnp.expm1(-v))


@functools.partial(jax.jit, static_argnames=("kernel_fn", "num_steps"))
def _optimise(kernel_fn, init_params, x, y, init_noise_variance, learning_rate,
              jitter, min_noise_variance, num_steps):
  def constrain(raw):
    params = jax.tree.map(jax.nn.softplus, raw["kernel"])
    noise = jax.nn.softplus(raw["noise"]) + min_noise_variance
    return params, noise

  def loss(raw):
    params, noise = constrain(raw)
    k_fn = lambda a, b: kernel_fn(params, a, b)
    return -_log_marginal_likelihood(k_fn, x, y, noise, jitter) / y.shape[0]

  raw = {"kernel": jax.tree.map(_inverse_softplus, init_params),
         "noise": _inverse_softplus(init_noise_variance - min_noise_variance)}
  optimizer = optax.adam(learning_rate)

  def step(carry, _):
    raw, opt_state = carry
    value, grads = jax.value_and_grad(loss)(raw)
    updates, opt_state = optimizer.update(grads, opt_state, raw)
    return (optax.apply_updates(raw, updates), opt_state), value

  (raw, _), history = jax.lax.scan(step, (raw, optimizer.init(raw)), None,
                                   length=num_steps)
  params, noise = constrain(raw)
  return HyperparameterFit(params=params, noise_variance=noise,
                           neg_log_marginal_likelihood=history)


def optimise_hyperparameters(kernel_fn: ParamKernelFn, init_params: Any,
                             x: Array, y: Array, init_noise_variance: Any, *,
                             num_steps: int = 200, learning_rate: float = 0.05,
                             jitter: float = 1e-6,
                             min_noise_variance: float = 1e-6
                             ) -> HyperparameterFit:
  """Type-II maximum likelihood: Adam on ``-log p(y | X, params, s2) / N``.

  Every leaf of ``init_params`` and the noise variance is treated as a
  positive quantity, optimised as ``softplus(raw)`` (noise:
  ``softplus(raw) + min_noise_variance``). All ``num_steps`` Adam steps run in
  one jitted ``lax.scan`` (compiled once per ``(kernel_fn, num_steps)`` and
  shapes); the function is pure, so it can be ``jax.vmap``-ed over data
  splits of equal size (value checks are skipped for traced arguments).

  Args:
    kernel_fn: ``(params, x1 [N, D], x2 [M, D]) -> [N, M]``, a hashable
      callable (e.g. :func:`jaxbdl.nngp.make_kernel_fn`).
    init_params: pytree of positive scalars/arrays, e.g.
      ``{"sigma_w2": 2.0, "sigma_b2": 0.1}``.
    x: inputs ``[N, D]``.
    y: targets ``[N]`` (standardised).
    init_noise_variance: initial noise variance, > ``min_noise_variance``.
    num_steps: Adam steps.
    learning_rate: Adam step size (on the unconstrained parameters).
    jitter: diagonal jitter in the Cholesky.
    min_noise_variance: lower bound on the noise variance (> 0).

  Returns:
    A :class:`HyperparameterFit`.
  """
  name = "gp.optimise_hyperparameters"
  _validate_xy(x, y, name)
  _validate_positive(init_noise_variance, "init_noise_variance", name)
  _validate_positive(min_noise_variance, "min_noise_variance", name)
  _validate_jitter(jitter, name)
  if int(num_steps) < 1:
    raise ValueError(f"{name}: num_steps must be >= 1, got {num_steps}")
  if _is_concrete(init_noise_variance) and not (
      float(init_noise_variance) > float(min_noise_variance)):
    raise ValueError(f"{name}: init_noise_variance ({float(init_noise_variance)}"
                     f") must exceed min_noise_variance "
                     f"({float(min_noise_variance)})")
  for path, leaf in jax.tree_util.tree_leaves_with_path(init_params):
    if _is_concrete(leaf) and not np.all(np.asarray(leaf) > 0):
      raise ValueError(f"{name}: initial hyper-parameter "
                       f"{jax.tree_util.keystr(path)} must be positive, got "
                       f"{np.asarray(leaf)}")
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  dtype = x.dtype
  init_params = jax.tree.map(lambda v: jnp.asarray(v, dtype), init_params)
  return _optimise(kernel_fn, init_params, x, y,
                   jnp.asarray(init_noise_variance, dtype),
                   jnp.asarray(learning_rate, dtype), jnp.asarray(jitter, dtype),
                   jnp.asarray(min_noise_variance, dtype), int(num_steps))


def gaussian_log_pdf(y: Array, mean: Array, variance: Array) -> Array:
  """Per-point ``log N(y; mean, variance)``, all ``[M]`` -> ``[M]``.

  For scoring GP predictives (``include_noise=True``) as a test log-likelihood.
  """
  return -0.5 * (jnp.log(2.0 * jnp.pi * variance) + (y - mean) ** 2 / variance)
