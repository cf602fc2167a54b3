"""Location-scale families: ``x = loc + scale * eps``, ``eps ~ p0``.

One construction, :func:`location_scale`, builds a factorised
:class:`~jaxbdl.gradients.distribution_protocol.Distribution` with params
``{"loc": [*E], "scale": [*E]}`` from a *standard* density ``p0`` (location
0, scale 1). Everything that follows from the change of variables
``z = (x - loc) / scale`` is written once here:

* ``noise``: ``eps ~ p0``, ``[*shape, *E]``;
* ``transform``: the reparameterisation path ``x = loc + scale * eps``
  (Mohamed et al. 2020, sec. 5.2, the location-scale transform);
* ``log_prob``: ``sum_d [log p0((x_d - loc_d) / scale_d) - log scale_d]``;
* ``entropy``: ``sum_d [H(p0) + log scale_d]``;
* ``mean`` = ``loc`` and ``covariance`` = ``diag(Var(p0) scale^2)``.

Only the KL divergence (whose closed form differs per family) and the weak
derivative (Mohamed et al. 2020, Table 1) are family-specific. ``scale`` is
the scale itself, not its logarithm (gradients are taken with respect to it).

:data:`Normal` (``p0 = N(0, 1)``) and :data:`Laplace` (``p0(z) = exp(-|z|) /
2``, so ``scale`` is ``b``, not the standard deviation ``sqrt(2) b``) are the
two instances the library uses.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 5.2 (location-scale
  transforms), Table 1 (weak derivatives of the Gaussian).
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxbdl._gaussian import HALF_LOG_2PI
from jaxbdl.gradients.distribution_protocol import (
    Array, Distribution, Params, WeakDerivative, _array_noise,
    _check_event, _diag_cov, _expand_to, _shape, _sum_event, check_params,
    standard_normal)

__all__ = ["location_scale", "Normal", "Laplace"]

_LOC_SCALE = ("loc", "scale")

# (loc1, scale1, loc2, scale2) [*E] each -> KL per coordinate [*E].
KlFn = Callable[[Array, Array, Array, Array], Array]
# (loc, scale, key, shape, coupled) -> {param_name: WeakDerivative}.
WeakDerivativeFn = Callable[..., dict]


def location_scale(name: str,
                   standard_noise: Callable[..., Array],
                   log_prob_standard: Callable[[Array], Array],
                   entropy_standard: float,
                   variance_standard: float | None,
                   kl: KlFn | None = None,
                   weak_derivative: WeakDerivativeFn | None = None
                   ) -> Distribution:
  """The location-scale family of a standard density ``p0``.

  Args:
    name: the family's name (error messages, ``Distribution.name``).
    standard_noise: ``(key, shape, dtype) -> eps ~ p0`` of that shape, e.g.
      ``jax.random.normal``; ``p0`` has location 0 and scale 1 (mean 0 where
      it has a mean).
    log_prob_standard: ``z -> log p0(z)`` elementwise.
    entropy_standard: ``H(p0)``, a number.
    variance_standard: ``Var(p0)``, or ``None`` if ``p0`` has no finite
      variance (then ``mean`` and ``covariance`` are ``None``).
    kl: ``(loc1, scale1, loc2, scale2) -> [*E]``, ``KL(p1 || p2)`` per
      coordinate, or ``None`` if there is no closed form (``kl`` then
      raises ``ValueError``).
    weak_derivative: ``(loc, scale, key, shape, coupled) -> {"loc":
      WeakDerivative, "scale": WeakDerivative}`` or ``None``.

  Returns:
    a reparameterised :class:`Distribution` with params ``{"loc", "scale"}``
    (equal shapes ``E``, ``scale > 0``).
  """

  def loc_scale(params: Params) -> tuple[Array, Array]:
    p = check_params(name, params, _LOC_SCALE)
    return p["loc"], p["scale"]

  def transform(params: Params, eps: Array) -> Array:
    """``x = loc + scale * eps``; eps ``[*batch, *E]`` -> ``[*batch, *E]``."""
    loc, scale = loc_scale(params)
    eps = _check_event(name, eps, loc.shape)
    return _expand_to(loc, eps.ndim) + _expand_to(scale, eps.ndim) * eps

  def log_prob(params: Params, x: Array) -> Array:
    """``sum_d [log p0(z_d) - log scale_d]``, ``z = (x - loc) / scale``.

    x ``[*batch, *E]`` -> ``[*batch]``.
    """
    loc, scale = loc_scale(params)
    x = _check_event(name, x, loc.shape)
    loc_b, scale_b = _expand_to(loc, x.ndim), _expand_to(scale, x.ndim)
    z = (x - loc_b) / scale_b
    return _sum_event(log_prob_standard(z) - jnp.log(scale_b), loc.ndim)

  def entropy(params: Params) -> Array:
    """``sum_d [H(p0) + log scale_d]``, a scalar."""
    return jnp.sum(entropy_standard + jnp.log(loc_scale(params)[1]))

  def kl_divergence(params: Params, other: Params) -> Array:
    """``KL(self || other)`` summed over the event, a scalar."""
    if kl is None:
      raise ValueError(f"{name} has no closed-form KL; estimate it as "
                       f"mean({name}.log_prob(p, x) - {name}.log_prob(q, x)) "
                       "over samples x of p")
    loc1, scale1 = loc_scale(params)
    loc2, scale2 = loc_scale(other)
    if loc1.shape != loc2.shape:
      raise ValueError(f"{name}.kl: shapes differ, {loc1.shape} vs "
                       f"{loc2.shape}")
    return jnp.sum(kl(loc1, scale1, loc2, scale2))

  def weak(params: Params, key: Array, shape=(), coupled: bool = True):
    return weak_derivative(*loc_scale(params), key, shape, coupled)

  def loc(params: Params) -> Array:
    return loc_scale(params)[0]

  def covariance(params: Params) -> Array:
    return _diag_cov(variance_standard * jnp.square(loc_scale(params)[1]))

  has_moments = variance_standard is not None
  has_weak = weak_derivative is not None
  return Distribution(
      name, _LOC_SCALE, reparameterized=True,
      noise=_array_noise(standard_noise, loc), transform=transform,
      log_prob=log_prob, entropy=entropy, kl=kl_divergence,
      event_shape=lambda params: tuple(loc(params).shape),
      mean=loc if has_moments else None,
      covariance=covariance if has_moments else None,
      weak_derivative=weak if has_weak else None,
      weak_derivative_params=_LOC_SCALE if has_weak else ())


# ---------------------------------------------------------------------------
# Normal (diagonal Gaussian): p0 = N(0, 1), scale = standard deviation.


def _normal_log_prob_standard(z: Array) -> Array:
  """``log N(z; 0, 1) = -z^2 / 2 - log(2 pi) / 2``."""
  return -0.5 * z * z - HALF_LOG_2PI


def _normal_kl(m1: Array, s1: Array, m2: Array, s2: Array) -> Array:
  """KL(N(m1, s1^2) || N(m2, s2^2)) per coordinate.

  = log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2.
  """
  var_ratio = jnp.square(s1 / s2)
  mahal = jnp.square((m1 - m2) / s2)
  return 0.5 * (var_ratio + mahal - 1.0 - jnp.log(var_ratio))


def _normal_weak_derivative(mu: Array, sigma: Array, key: Array, shape=(),
                            coupled: bool = True) -> dict:
  """Gaussian weak derivatives (Mohamed et al. 2020, Table 1).

  loc: ``c = 1 / (sigma sqrt(2 pi))``, ``q+- = mu +- sigma W``,
  W ~ Weibull(k=2, lambda=sqrt 2) (= Rayleigh(1) = |N(0, I_2)|).
  scale: ``c = 1 / sigma``, ``q+ = mu + sigma M`` (M double-sided Maxwell,
  density m^2 phi(m)), ``q- = N(mu, sigma^2)``.
  Coupled: the same W on both sides, and ``q- = mu + sigma U M`` with
  U ~ U(0, 1) (U M is exactly N(0, 1)). Uncoupled: independent W' and eps.
  All variates come from ONE normal call of 9 per coordinate; draws are
  ``[*shape, *E]``.
  """
  shape = _shape(shape)
  z = jax.random.normal(key, shape + mu.shape + (9,), dtype=mu.dtype)
  w = jnp.sqrt(jnp.sum(jnp.square(z[..., 0:2]), axis=-1))
  m = jnp.sqrt(jnp.sum(jnp.square(z[..., 2:5]), axis=-1))
  m = jnp.where(z[..., 5] < 0, -m, m)
  if coupled:
    w_neg = w
    # Uniform(0, 1) = exp(-chi^2_2 / 2).
    u = jnp.exp(-0.5 * jnp.sum(jnp.square(z[..., 6:8]), axis=-1))
    eps_neg = u * m
  else:
    w_neg = jnp.sqrt(jnp.sum(jnp.square(z[..., 6:8]), axis=-1))
    eps_neg = z[..., 8]
  n = len(shape) + mu.ndim
  mu_b, sigma_b = _expand_to(mu, n), _expand_to(sigma, n)
  return {
      "loc": WeakDerivative(1.0 / (sigma * math.sqrt(2.0 * math.pi)),
                            mu_b + sigma_b * w, mu_b - sigma_b * w_neg),
      "scale": WeakDerivative(1.0 / sigma, mu_b + sigma_b * m,
                              mu_b + sigma_b * eps_neg),
  }


Normal = location_scale(
    "Normal", standard_normal, _normal_log_prob_standard,
    entropy_standard=0.5 + HALF_LOG_2PI,  # 0.5 log(2 pi e)
    variance_standard=1.0, kl=_normal_kl,
    weak_derivative=_normal_weak_derivative)


# ---------------------------------------------------------------------------
# Laplace: p0(z) = exp(-|z|) / 2, density exp(-|x - m| / b) / (2 b).


def _laplace_kl(m1: Array, b1: Array, m2: Array, b2: Array) -> Array:
  """KL(L(m1, b1) || L(m2, b2)) per coordinate.

  = log(b2/b1) + |m1 - m2|/b2 + (b1/b2) exp(-|m1 - m2|/b1) - 1.
  """
  d = jnp.abs(m1 - m2)
  return jnp.log(b2 / b1) + d / b2 + (b1 / b2) * jnp.exp(-d / b1) - 1.0


Laplace = location_scale(
    "Laplace", jax.random.laplace, lambda z: -jnp.abs(z) - math.log(2.0),
    entropy_standard=1.0 + math.log(2.0), variance_standard=2.0,
    kl=_laplace_kl)
