"""Multivariate Normals: full (Cholesky) and low-rank-plus-diagonal covariance.

* :data:`MultivariateNormalTriL`, params ``{"loc": [D], "scale_tril": [D,
  D]}``: ``Sigma = L L^T`` (lower triangle used, diagonal > 0);
  ``x = loc + L eps``, ``eps ~ N(0, I_D)``.
* :data:`LowRankMultivariateNormal`, params ``{"loc": [D], "cov_factor":
  [D, R], "cov_diag": [D]}``: ``Sigma = F F^T + diag(d)``;
  ``x = loc + F eps[:R] + sqrt(d) eps[R:]``, ``eps ~ N(0, I_{R + D})``;
  ``log_prob`` by the Woodbury identity in ``O(D R^2)``.

Both are reparameterised (the pathwise estimator applies; Mohamed et al.
2020, sec. 5.2, the linear transform of a standard Gaussian). The event is
``[D]``; ``entropy`` and ``kl`` use the shared closed forms
``H = D/2 log(2 pi e) + sum log diag L`` and ``KL(N1 || N2)`` below.

References:
  S. Mohamed, M. Rosca, M. Figurnov, A. Mnih. Monte Carlo Gradient Estimation
  in Machine Learning. JMLR 21(132), 2020. Sec. 5.2.
  C. M. Bishop. Pattern Recognition and Machine Learning, 2006. Eq. (2.43)
  (density), Appendix C (Woodbury identity, eq. C.7).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxbdl._gaussian import HALF_LOG_2PI
from jaxbdl.gradients.distribution_protocol import (
    Array, Distribution, Params, _array_noise, _check_event,
    _check_keys, _expand_to, _positive, _shape, standard_normal)

__all__ = ["MultivariateNormalTriL", "LowRankMultivariateNormal"]

# ---------------------------------------------------------------------------
# Multivariate Normal, full covariance Sigma = L L^T, params {"loc": [D],
# "scale_tril": [D, D]} (lower triangle used, diagonal > 0).

_MVN = ("loc", "scale_tril")


def _mvn_params(params: Params) -> tuple[Array, Array]:
  p = _check_keys("MultivariateNormalTriL", params, _MVN)
  loc, tril = p["loc"], p["scale_tril"]
  if loc.ndim != 1 or tril.shape != loc.shape * 2:
    raise ValueError(f"MultivariateNormalTriL needs loc [D] and scale_tril "
                     f"[D, D], got {loc.shape} and {tril.shape}")
  tril = jnp.tril(tril)
  diag = jnp.diagonal(tril)
  poisoned = _positive("MultivariateNormalTriL", "scale_tril diagonal", diag)
  if poisoned is not diag:  # traced: NaN-poison non-positive diagonals
    tril = tril + jnp.diag(poisoned - diag)
  return loc, tril


def _mvn_transform(params: Params, eps: Array) -> Array:
  """``x = loc + L eps``; eps ``[*batch, D]``."""
  loc, tril = _mvn_params(params)
  eps = _check_event("MultivariateNormalTriL", eps, loc.shape)
  return _expand_to(loc, eps.ndim) + jnp.einsum("de,...e->...d", tril, eps)


def _tril_log_prob(loc: Array, tril: Array, x: Array) -> Array:
  r = (x - _expand_to(loc, x.ndim)).reshape(-1, loc.shape[0])
  z = jax.scipy.linalg.solve_triangular(tril, r.T, lower=True)  # [D, B]
  d = loc.shape[0]
  lp = (-0.5 * jnp.sum(jnp.square(z), axis=0) -
        jnp.sum(jnp.log(jnp.diagonal(tril))) - d * HALF_LOG_2PI)
  return lp.reshape(x.shape[:-1])


def _mvn_log_prob(params: Params, x: Array) -> Array:
  """log N(x; loc, L L^T), x ``[*batch, D]`` -> ``[*batch]``."""
  loc, tril = _mvn_params(params)
  x = _check_event("MultivariateNormalTriL", x, loc.shape)
  return _tril_log_prob(loc, tril, x)


def _gaussian_entropy(tril: Array) -> Array:
  d = tril.shape[0]
  return d * (0.5 + HALF_LOG_2PI) + jnp.sum(jnp.log(jnp.diagonal(tril)))


def _gaussian_kl(loc1, tril1, loc2, tril2) -> Array:
  """KL(N(m1, L1 L1^T) || N(m2, L2 L2^T)) = sum log diag L2
  - sum log diag L1 + (||L2^-1 L1||_F^2 + ||L2^-1 (m2 - m1)||^2 - D) / 2."""
  if loc1.shape != loc2.shape:
    raise ValueError(f"MultivariateNormal kl: shapes differ, {loc1.shape} "
                     f"vs {loc2.shape}")
  solve = lambda b: jax.scipy.linalg.solve_triangular(tril2, b, lower=True)
  m = solve((loc2 - loc1)[:, None])[:, 0]
  return (jnp.sum(jnp.log(jnp.diagonal(tril2))) -
          jnp.sum(jnp.log(jnp.diagonal(tril1))) +
          0.5 * (jnp.sum(jnp.square(solve(tril1))) + jnp.sum(jnp.square(m)) -
                 loc1.shape[0]))


def _gaussian(name: str, param_names: tuple[str, ...],
              loc: Callable[[Params], Array],
              loc_tril: Callable[[Params], tuple[Array, Array]],
              **functions) -> Distribution:
  """A multivariate Normal family over ``[D]``, reparameterised.

  ``loc(params) -> [D]`` gives the mean and the event shape;
  ``loc_tril(params) -> (loc [D], L [D, D])`` with ``L L^T = Sigma`` gives
  the entropy and the KL divergence (:func:`_gaussian_entropy`,
  :func:`_gaussian_kl`). ``functions``: ``noise``, ``transform``,
  ``log_prob``, ``covariance``.
  """
  return Distribution(
      name, param_names, reparameterized=True,
      entropy=lambda params: _gaussian_entropy(loc_tril(params)[1]),
      kl=lambda params, other: _gaussian_kl(*loc_tril(params),
                                            *loc_tril(other)),
      event_shape=lambda params: tuple(loc(params).shape), mean=loc,
      **functions)


def _mvn_loc(params: Params) -> Array:
  return _mvn_params(params)[0]


# noise: eps ~ N(0, I_D), [*shape, D].
MultivariateNormalTriL = _gaussian(
    "MultivariateNormalTriL", _MVN, _mvn_loc, _mvn_params,
    noise=_array_noise(standard_normal, _mvn_loc), transform=_mvn_transform,
    log_prob=_mvn_log_prob,
    covariance=lambda params: (lambda t: t @ t.T)(_mvn_params(params)[1]))


# ---------------------------------------------------------------------------
# Low-rank plus diagonal Normal, Sigma = F F^T + diag(d), params
# {"loc": [D], "cov_factor": [D, R], "cov_diag": [D]}.

_LOWRANK = ("loc", "cov_factor", "cov_diag")


def _lowrank_params(params: Params) -> tuple[Array, Array, Array]:
  p = _check_keys("LowRankMultivariateNormal", params, _LOWRANK)
  loc, f, d = p["loc"], p["cov_factor"], p["cov_diag"]
  if (loc.ndim != 1 or d.shape != loc.shape or f.ndim != 2 or
      f.shape[0] != loc.shape[0]):
    raise ValueError(f"LowRankMultivariateNormal needs loc [D], cov_factor "
                     f"[D, R], cov_diag [D], got {loc.shape}, {f.shape}, "
                     f"{d.shape}")
  return loc, f, _positive("LowRankMultivariateNormal", "cov_diag", d)


def _lowrank_noise(params: Params, key: Array, shape=()) -> Array:
  """eps ~ N(0, I_{R + D}), ``[*shape, R + D]``."""
  loc, f, _ = _lowrank_params(params)
  return standard_normal(key, _shape(shape) + (f.shape[1] + loc.shape[0],),
                         dtype=loc.dtype)


def _lowrank_transform(params: Params, eps: Array) -> Array:
  """``x = loc + F eps[:R] + sqrt(d) eps[R:]``; eps ``[*batch, R + D]``."""
  loc, f, d = _lowrank_params(params)
  r = f.shape[1]
  eps = _check_event("LowRankMultivariateNormal", eps, (r + loc.shape[0],))
  return (_expand_to(loc, eps.ndim) +
          jnp.einsum("dr,...r->...d", f, eps[..., :r]) +
          _expand_to(jnp.sqrt(d), eps.ndim) * eps[..., r:])


def _lowrank_log_prob(params: Params, x: Array) -> Array:
  """Woodbury: with C = I_R + F^T D^-1 F = L_C L_C^T,
  r^T Sigma^-1 r = sum r^2 / d - ||L_C^-1 F^T (r / d)||^2 and
  log det Sigma = sum log d + 2 sum log diag L_C. O(D R^2) per call."""
  loc, f, d = _lowrank_params(params)
  x = _check_event("LowRankMultivariateNormal", x, loc.shape)
  r_bxd = (x - _expand_to(loc, x.ndim)).reshape(-1, loc.shape[0])
  cap = jnp.eye(f.shape[1], dtype=f.dtype) + f.T @ (f / d[:, None])
  chol = jnp.linalg.cholesky(cap)
  w = jax.scipy.linalg.solve_triangular(chol, f.T @ (r_bxd / d[None]).T,
                                        lower=True)  # [R, B]
  mahal = (jnp.sum(jnp.square(r_bxd) / d[None], axis=-1) -
           jnp.sum(jnp.square(w), axis=0))
  logdet = jnp.sum(jnp.log(d)) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
  lp = -0.5 * (mahal + logdet) - loc.shape[0] * HALF_LOG_2PI
  return lp.reshape(x.shape[:-1])


def _lowrank_cov(params: Params) -> Array:
  _, f, d = _lowrank_params(params)
  return f @ f.T + jnp.diag(d)


def _lowrank_tril(params: Params) -> tuple[Array, Array]:
  """``(loc, cholesky(Sigma))``, dense O(D^3) (entropy and KL)."""
  return _lowrank_params(params)[0], jnp.linalg.cholesky(_lowrank_cov(params))


LowRankMultivariateNormal = _gaussian(
    "LowRankMultivariateNormal", _LOWRANK,
    lambda params: _lowrank_params(params)[0], _lowrank_tril,
    noise=_lowrank_noise, transform=_lowrank_transform,
    log_prob=_lowrank_log_prob, covariance=_lowrank_cov)
