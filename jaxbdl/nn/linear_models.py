"""Linear-in-the-parameters models: polynomial features, ML, Gaussian-MAP, Laplace-MAP.

The lecture's curve-fitting example (Bishop 2006, PRML section 1.1): a
polynomial ``y(x, w) = sum_m w_m x^m`` fitted by maximum likelihood (least
squares, Gaussian noise; :func:`maximum_likelihood`, minimum-norm ``lstsq``,
to be run in float64 for high degrees), by MAP with a Gaussian prior (ridge / L2) and by MAP
with a Laplace prior (lasso / L1). With noise precision ``beta`` and prior
precision ``alpha`` (Gaussian) the MAP weights minimise
``beta/2 ||y - Phi w||^2 + alpha/2 ||w||^2``; with a Laplace prior of scale
``b`` they minimise ``beta/2 ||y - Phi w||^2 + ||w||_1 / b``.

Degrees are compared in one vmapped program by building features up to a
maximum degree and masking the unused columns (their weights are exactly 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["polynomial_features", "maximum_likelihood", "gaussian_map",
           "laplace_map"]


def polynomial_features(x: jax.Array, degree, max_degree: int) -> jax.Array:
  """Masked monomial features.

  Args:
    x: inputs ``[N]``.
    degree: int (may be traced, so degrees can be vmapped) ``<= max_degree``.
    max_degree: static maximum degree.

  Returns:
    ``[N, max_degree + 1]`` with column ``m`` equal to ``x**m`` for
    ``m <= degree`` and 0 otherwise.
  """
  if x.ndim != 1:
    raise ValueError(f"polynomial_features expects x of shape [N], got {x.shape}")
  powers = jnp.arange(max_degree + 1)
  phi = x[:, None] ** powers[None, :]
  mask = (powers <= degree).astype(x.dtype)
  return phi * mask[None, :]


def _column_mask(phi: jax.Array) -> jax.Array:
  return jnp.any(phi != 0, axis=0).astype(phi.dtype)


def maximum_likelihood(phi: jax.Array, y: jax.Array) -> jax.Array:
  """Maximum-likelihood weights under Gaussian noise: least squares.

  ``w = argmin_w ||y - Phi w||^2``, the minimum-norm one when it is not
  unique (SVD ``lstsq``, singular values below ``eps * max(N, P) *
  sigma_max`` treated as zero). No ridge of any size is added: with as many
  parameters as points (degree 9 on 10 points) it interpolates. Polynomial
  design matrices are ill-conditioned (degree 9 on [-1, 1]: condition
  ~1e4 to 1e6), so call it on float64 arrays (``with jax.enable_x64(True)``)
  to get the exact least-squares fit; in float32 the result is only the
  least-squares fit to about ``cond * 1e-7`` relative accuracy. Masked (all
  zero) columns get weight 0.

  Args:
    phi: design matrix ``[N, P]``.
    y: targets ``[N]``.

  Returns:
    weights ``[P]`` (dtype of ``phi``).
  """
  mask = _column_mask(phi)
  w, _, _, _ = jnp.linalg.lstsq(phi, y, rcond=None)
  return w * mask


def gaussian_map(phi: jax.Array, y: jax.Array, alpha, beta=1.0) -> jax.Array:
  """MAP weights under a Gaussian prior N(0, 1/alpha) and noise precision beta.

  Solves ``(beta Phi^T Phi + alpha I) w = beta Phi^T y`` exactly (no hidden
  ridge); ``alpha`` must be > 0 (for ``alpha = 0``, the maximum-likelihood
  fit, use :func:`maximum_likelihood`). Masked (all zero) columns get
  weight 0.

  Args:
    phi: design matrix ``[N, P]``.
    y: targets ``[N]``.
    alpha: prior precision > 0.
    beta: noise precision > 0.

  Returns:
    weights ``[P]``.
  """
  if isinstance(alpha, (int, float)) and not alpha > 0:
    raise ValueError(f"gaussian_map: alpha must be > 0, got {alpha!r} (use "
                     "maximum_likelihood for the unregularised fit)")
  mask = _column_mask(phi)
  p = phi.shape[1]
  # Unused columns get a unit diagonal so the system stays well posed.
  a = beta * phi.T @ phi + alpha * jnp.eye(p) + jnp.diag(1.0 - mask)
  w = jnp.linalg.solve(a, beta * phi.T @ y)
  return w * mask


def laplace_map(phi: jax.Array, y: jax.Array, scale, beta=1.0,
                num_iters: int = 5000) -> jax.Array:
  """MAP weights under a Laplace(0, scale) prior by proximal gradient (ISTA).

  Minimises ``beta/2 ||y - Phi w||^2 + ||w||_1 / scale``; each iteration is a
  gradient step on the smooth part with step ``1 / L`` (``L`` the largest
  eigenvalue of ``beta Phi^T Phi``) followed by soft-thresholding, which
  converges to the exact (sparse) minimiser (Beck & Teboulle 2009).

  Args:
    phi: ``[N, P]``; y: ``[N]``; scale: Laplace scale ``b > 0``; beta: noise
      precision; num_iters: static iteration count.

  Returns:
    weights ``[P]``.
  """
  lipschitz = beta * jnp.max(jnp.linalg.eigvalsh(phi.T @ phi)) + 1e-12
  step = 1.0 / lipschitz
  thresh = step / scale

  def body(_, w):
    grad = beta * phi.T @ (phi @ w - y)
    z = w - step * grad
    return jnp.sign(z) * jnp.maximum(jnp.abs(z) - thresh, 0.0)

  return jax.lax.fori_loop(0, num_iters, body, jnp.zeros(phi.shape[1], phi.dtype))
